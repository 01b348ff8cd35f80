-- meshctl's fault injection, loaded by the proxy sidecar (templates/haproxy-faults.cfg calls it).
-- txn.meshctl_faults holds the faults that apply to this call, in the order they apply, each
-- KIND:VALUE:PERCENT (abort:503:20 answers 503 to 20% of calls; delay:300:50 waits 300 ms on
-- half of them; reset:0:10 closes 10% of TCP connections). An abort or reset ends the list.
-- Each fault injected is logged as one line, `meshctl-fault KIND SOURCE`, which the metrics
-- sidecar counts (meshctl_faults_injected_total).

local function faults(txn)
    local spec = txn:get_var("txn.meshctl_faults") or ""
    return string.gmatch(spec, "(%a+):(%d+):([%d.]+)")
end

local function hit(txn, percent)
    return txn.f:rand(1000000) < tonumber(percent) * 10000
end

local function injected(txn, kind, source)
    txn:set_var("txn.meshctl_fault", kind)
    core.log(core.info, "meshctl-fault " .. kind .. " " .. source)
end

-- The caller: its certificate's name on the mesh listener, `host` on the published ports.
local function source_of(txn, where)
    if where == "mesh" then
        local name = txn.f:ssl_c_s_dn("CN")
        if name and name ~= "" then return name end
        return "unknown"
    end
    return "host"
end

core.register_action("meshctl_fault", {"http-req"}, function(txn, where)
    local source = source_of(txn, where)
    for kind, value, percent in faults(txn) do
        if hit(txn, percent) then
            injected(txn, kind, source)
            if kind == "abort" then
                txn:done(txn:reply({status = tonumber(value), body = "fault injected by meshctl: abort " .. value .. "\n",
                                    headers = {["content-type"] = {"text/plain"}}}))
                return
            end
            core.msleep(tonumber(value))
        end
    end
end, 1)

core.register_action("meshctl_tcp_fault", {"tcp-req"}, function(txn, where)
    local source = source_of(txn, where)
    for kind, value, percent in faults(txn) do
        if hit(txn, percent) then
            injected(txn, kind, source)
            if kind == "reset" then return end
            core.msleep(tonumber(value))
        end
    end
end, 1)
