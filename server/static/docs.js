// Renders /v1/openapi.json with Swagger UI, from files the server itself serves: no CDN, and
// no validator badge (its default sends the document to validator.swagger.io).
"use strict";
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
