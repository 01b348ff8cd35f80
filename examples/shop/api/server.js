// api: answers who called it, and counts visits in kv. Its proxy verified the caller's certificate
// and tells the app in X-Forwarded-Client-Cert (Envoy's format: By=<this service>;URI=<the caller's
// SPIFFE id>). kv is a TCP line protocol at kv:7000, reached like any database: by name and port.
const http = require("http");
const net = require("net");

const [KV_HOST, KV_PORT] = (process.env.KV_ADDR || "kv:7000").split(":");

// One command to kv on a fresh connection: its one-line answer, or an error if the connection
// closed without one (a mesh that does not let this service in closes it).
function kv(command) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: KV_HOST, port: Number(KV_PORT) });
    let data = "";
    socket.setTimeout(10000, () => socket.destroy(new Error("kv did not answer in 10 s")));
    socket.on("connect", () => socket.write(command + "\n"));
    socket.on("data", (chunk) => {
      data += chunk;
      if (data.includes("\n")) {
        socket.end();
        resolve(data.split("\n")[0]);
      }
    });
    socket.on("error", reject);
    socket.on("close", () => reject(new Error("kv closed the connection without an answer")));
  });
}

let stopping = false;

const server = http.createServer(async (req, res) => {
  // Once stopping, every response closes its connection (see SIGTERM below).
  if (stopping) res.setHeader("Connection", "close");
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "text/plain" });
    return res.end("ok\n");
  }
  const xfcc = req.headers["x-forwarded-client-cert"] || "";
  const caller = (xfcc.match(/URI=([^;,]+)/) || [])[1] || null;
  console.log(`api: ${req.method} ${req.url} from ${caller || "outside the mesh"}`);
  if (req.url === "/visits") {
    try {
      const visits = Number(await kv("INCR visits"));
      res.writeHead(200, { "Content-Type": "application/json" });
      return res.end(JSON.stringify({ api: "visits", visits, caller }) + "\n");
    } catch (error) {
      res.writeHead(502, { "Content-Type": "application/json" });
      return res.end(JSON.stringify({ api: "visits", error: String(error.message || error) }) + "\n");
    }
  }
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ api: "whoami", caller, xfcc }) + "\n");
});

// Stop on SIGTERM: no new connections, finish what is in flight, exit. The proxy holds new requests
// until the next app listens, so this process must not linger: close() alone waits for the proxy's
// kept-alive connections (Node's 5 s keep-alive timeout, renewed each time one is reused), and
// closeIdleConnections() once misses those busy at SIGTERM. So they are closed as soon as they are
// idle, and responses from now on say `Connection: close`. (A request the proxy sends just as its
// connection closes comes back empty, and the proxy retries it: `retry-on empty-response`.)
process.on("SIGTERM", () => {
  stopping = true;
  server.close(() => process.exit(0));
  server.closeIdleConnections();
  setInterval(() => server.closeIdleConnections(), 50).unref();
});
server.listen(Number(process.env.PORT || 8080), () => console.log(`api: listening on ${server.address().port}`));
