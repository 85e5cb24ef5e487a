// A dependency-free HTTP server: the shape of a small Node.js docker Space.
const http = require("node:http");

const port = Number(process.env.PORT || 7860);
http
  .createServer((request, response) => {
    if (request.url !== "/") {
      response.writeHead(404, { "Content-Type": "application/json" });
      response.end(JSON.stringify({ error: "not found" }));
      return;
    }
    response.writeHead(200, { "Content-Type": "application/json" });
    response.end(JSON.stringify({ message: "Hello from Node.js", node: process.version }));
  })
  .listen(port, "0.0.0.0", () => console.log(`listening on ${port}`));
