// Writes the site into dist/: the page from src/index.html with its title filled in, and the
// script under dist/assets/ (linked as /assets/app.js, as bundlers write it).
const fs = require("node:fs");
const path = require("node:path");
const escapeHtml = require("escape-html");

const title = escapeHtml("Built by app_build_command <npm run build>");
const page = fs.readFileSync(path.join("src", "index.html"), "utf8").replace("%TITLE%", title);
fs.mkdirSync(path.join("dist", "assets"), { recursive: true });
fs.writeFileSync(path.join("dist", "index.html"), page);
fs.copyFileSync(path.join("src", "app.js"), path.join("dist", "assets", "app.js"));
console.log(`built dist/ with Node.js ${process.version}`);
