// A Node.js service with no Dockerfile: `meshctl up examples/node -- node server.js`.
// Its static files are served by an NGINX sidecar of its own on the pod's localhost (mesh.yaml's
// `sidecars: {static: ...}`); meshctl starts it, and waits until it answers, before this runs.
const http = require("http");

const port = Number(process.env.PORT || 8080);
const STATIC = "http://127.0.0.1:8081";     // the sidecar, in this pod's network namespace
const greeting = process.env.GREETING || "hello";

let stopping = false;

const server = http.createServer(async (req, res) => {
  if (stopping) res.setHeader("connection", "close");     // see SIGTERM below
  if (req.url === "/healthz") {
    res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
  } else if (req.url.startsWith("/static/")) {
    // Passed to the sidecar as it is: its answer, its status.
    try {
      const answer = await fetch(STATIC + req.url);
      res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") || "text/plain" });
      res.end(Buffer.from(await answer.arrayBuffer()));
    } catch (err) {
      res.writeHead(502, { "content-type": "text/plain" }).end(`the static sidecar did not answer: ${err.message}\n`);
    }
  } else if (req.url === "/") {
    res.writeHead(200, { "content-type": "text/plain" }).end(`${greeting} from node\n`);
  } else {
    res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
  }
});

server.listen(port, () => console.log(`node: listening on :${port}`));
// Stop on SIGTERM: finish what is in flight, then exit (the proxy holds new requests meanwhile, so
// this must not linger). close() alone waits for the proxy's kept-alive connections (Node's 5 s
// keep-alive timeout, renewed on each reuse), and one closeIdleConnections() misses those busy at
// SIGTERM: they are closed as soon as they are idle, and responses from now on close theirs.
process.on("SIGTERM", () => {
  stopping = true;
  server.close(() => { console.log("node: stopped"); process.exit(0); });
  server.closeIdleConnections();
  setInterval(() => server.closeIdleConnections(), 50).unref();
});
