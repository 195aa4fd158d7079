// Package console serves fhiranchor's web console: the static files in
// dist/, built from src/ by build.mjs (make generate) and embedded, so
// `fhiranchor serve` needs nothing beside its binary and works offline.
// The pages call the gateway's own REST API with the signed-in bearer
// token; serving them needs none.
package console

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console/"

// nonceMeta is the tag in dist/index.html that carries the per-response
// style nonce to the pages: CodeMirror injects its theme as <style>
// elements, which a CSP without 'unsafe-inline' admits only with it.
const nonceMeta = `<meta name="csp-nonce" content="">`

type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the console under Prefix: index.html for Prefix itself and
// for any path that names no file (the pages route by the URL's fragment),
// the bundle's files with their types. Every answer carries a
// Content-Security-Policy that admits scripts and connections from this
// origin only, and styles from it or with the answer's nonce.
func Handler() http.Handler {
	files := map[string]file{}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		files[strings.TrimPrefix(p, "dist/")] = file{body: b, contentType: contentType(p), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	index, ok := files["index.html"]
	if err != nil || !ok || !bytes.Contains(index.body, []byte(nonceMeta)) {
		// The embedded files are part of the binary: a build without
		// them, or with an index.html build.mjs did not write, is broken.
		panic("console: dist/ is not a console build; run make generate")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean(r.URL.Path), strings.TrimSuffix(Prefix, "/"))
		name = strings.TrimPrefix(name, "/")
		f, ok := files[name]
		if !ok || name == "index.html" {
			serveIndex(w, r, index.body)
			return
		}
		h := w.Header()
		setSecurityHeaders(h, "")
		h.Set("Content-Type", f.contentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", f.etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
	})
}

// serveIndex answers index.html with a fresh style nonce in its meta tag and
// its CSP; it is never cached, since the nonce must not be reused.
func serveIndex(w http.ResponseWriter, r *http.Request, body []byte) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	nonce := base64.RawStdEncoding.EncodeToString(b[:])
	out := bytes.Replace(body, []byte(nonceMeta), []byte(`<meta name="csp-nonce" content="`+nonce+`">`), 1)
	h := w.Header()
	setSecurityHeaders(h, nonce)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(out)
}

func setSecurityHeaders(h http.Header, nonce string) {
	style := "style-src 'self'"
	if nonce != "" {
		style += " 'nonce-" + nonce + "'"
	}
	h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; "+style+
		"; img-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}
