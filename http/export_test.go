package http

import "github.com/go-chi/chi/v5"

// Routes exposes the router to the tests of package http_test, so that
// they can walk the routes it serves.
func (s *Server) Routes() chi.Routes { return s.router }
