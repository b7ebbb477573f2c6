package hub

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

var funcs = template.FuncMap{
	"join": strings.Join,
	"time": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"lower": strings.ToLower,
	// rows hands a request table its rows and the time statuses are shown at.
	"rows": func(rows []*Request, now time.Time) map[string]any { return map[string]any{"Rows": rows, "Now": now} },
	"has": func(list []string, s string) bool {
		for _, x := range list {
			if x == s {
				return true
			}
		}
		return false
	},
}

// parsePages parses each page with the layout it fills.
func parsePages() (map[string]*template.Template, error) {
	files, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", f)
		if err != nil {
			return nil, fmt.Errorf("hub: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes a page; data gains the session's user and CSRF token.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data map[string]any) {
	if sess := sessionFrom(r); sess != nil {
		data["User"] = sess.Principal
		if _, ok := data["CSRF"]; !ok {
			data["CSRF"] = sess.CSRF
		}
	}
	data["Base"] = Base
	data["Now"] = time.Now()
	data["Environment"] = s.cfg.Environment
	var b bytes.Buffer
	if err := s.pages[page].Execute(&b, data); err != nil {
		s.logger.Error("hub: rendering", "page", page, "error", err)
		http.Error(w, "The page could not be shown.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
