document.getElementById("out").textContent = "script loaded from /assets/app.js";
