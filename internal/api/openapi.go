package api

import _ "embed"

// openAPI is the OpenAPI 3 document of /api/v1, served at
// GET /api/v1/openapi.json so that integrators can generate clients.
// TestOpenAPIMatchesRoutes keeps it and the registered routes in step.
//
//go:embed openapi.json
var openAPI []byte
