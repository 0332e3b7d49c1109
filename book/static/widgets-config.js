// Loaded between require.js and the vendored @jupyter-widgets/html-manager (see _config.yml).
// The widget manager finds its icon fonts next to the URL require.js gives its module; by default that is
// "@jupyter-widgets/html-manager/dist/" under the page's folder, which does not exist. Point require.js at the
// vendored copy under _static/ instead (this script's own folder).
(function () {
  var src = document.currentScript.src.split("?")[0];
  var staticDir = src.slice(0, src.lastIndexOf("/"));
  requirejs.config({ paths: { "@jupyter-widgets/html-manager/dist": staticDir + "/html-manager" } });
})();
