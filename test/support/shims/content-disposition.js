// jest's module loader cannot require ES modules; content-disposition 3 (pulled in by
// @fastify/static, which serves the Swagger UI) is one. Node itself loads it fine at run time.
// The broker never sends file downloads, so tests only need the function to exist.
'use strict';
function create(filename) {
  return `attachment; filename="${String(filename).replace(/"/g, '')}"`;
}
module.exports = { create, parse: () => ({ type: 'attachment', parameters: {} }) };
