// api: answers who called it. Its proxy verified the caller's certificate and tells the app in
// X-Forwarded-Client-Cert (Envoy's format: By=<this service>;URI=<the caller's SPIFFE id>).
const http = require("http");

const server = http.createServer((req, res) => {
  if (req.url === "/healthz") {
    res.writeHead(200, { "Content-Type": "text/plain" });
    return res.end("ok\n");
  }
  const xfcc = req.headers["x-forwarded-client-cert"] || "";
  const caller = (xfcc.match(/URI=([^;,]+)/) || [])[1] || null;
  res.writeHead(200, { "Content-Type": "application/json" });
  res.end(JSON.stringify({ api: "whoami", caller, xfcc }) + "\n");
  console.log(`api: ${req.method} ${req.url} from ${caller || "outside the mesh"}`);
});

// close() alone waits for the proxy's kept-alive connections to time out (about 5 s a stop).
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
server.listen(Number(process.env.PORT || 8080), () => console.log(`api: listening on ${server.address().port}`));
