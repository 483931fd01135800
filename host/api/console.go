package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/orloj/orloj/host/api/ui"
)

// The web console: static pages under /ui that call the /v1 API from the
// browser. A person logs in with the admin token; the server answers with a
// session cookie that is not the token but a value signed with a key
// derived from it, so the cookie never carries the token and every node
// with the same token accepts it (no session table to replicate). A
// request authenticated by the cookie that could change something (any
// method but GET and HEAD) must also carry the session's CSRF token, which
// only a page of the same origin can read (GET /ui/session). See
// docs/console.md.

const (
	sessionCookie   = "orloj_session"
	csrfHeader      = "X-Orloj-CSRF"
	sessionLifetime = 12 * time.Hour
	maxLoginBytes   = 8 << 10
)

// consolePolicy is the Content-Security-Policy of every console page:
// scripts and styles of this origin only (no inline code), nothing framed.
const consolePolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// console signs and checks session cookies.
type console struct {
	key    []byte // HMAC key derived from the admin token
	static fs.FS
}

func newConsole(token string) *console {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("orloj console session key v1"))
	static, err := fs.Sub(ui.Files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &console{key: m.Sum(nil), static: static}
}

// A session value is base64url(expiry unix seconds, 8 bytes BE || 16
// random bytes) "." base64url(HMAC(key, "session" || payload)).
const sessionPayload = 8 + 16

func (c *console) mac(purpose string, payload []byte) []byte {
	m := hmac.New(sha256.New, c.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)
}

func (c *console) newSession(now time.Time) (value string, payload []byte, expires time.Time) {
	payload = make([]byte, sessionPayload)
	expires = now.Add(sessionLifetime).Truncate(time.Second)
	binary.BigEndian.PutUint64(payload, uint64(expires.Unix()))
	_, _ = rand.Read(payload[8:])
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(c.mac("session", payload)), payload, expires
}

// session returns the payload of r's valid, unexpired session cookie.
func (c *console) session(r *http.Request, now time.Time) ([]byte, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || len(ck.Value) > 128 {
		return nil, false
	}
	p, m, ok := strings.Cut(ck.Value, ".")
	if !ok {
		return nil, false
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	mac, err2 := enc.DecodeString(m)
	if err1 != nil || err2 != nil || len(payload) != sessionPayload || !hmac.Equal(mac, c.mac("session", payload)) {
		return nil, false
	}
	if exp := int64(binary.BigEndian.Uint64(payload)); now.Unix() >= exp {
		return nil, false
	}
	return payload, true
}

func (c *console) csrf(payload []byte) string {
	return base64.RawURLEncoding.EncodeToString(c.mac("csrf", payload))
}

type sessionAuth int

const (
	sessionNone   sessionAuth = iota // no valid session: unauthorized
	sessionOK                        // a valid session, and the CSRF token if the method needs it
	sessionNoCSRF                    // a valid session, but a write without its CSRF token
)

// authorize judges a /v1 request that has no valid bearer token. A request
// that sent an Authorization header is judged by it alone.
func (c *console) authorize(r *http.Request, now time.Time) sessionAuth {
	if r.Header.Get("Authorization") != "" {
		return sessionNone
	}
	payload, ok := c.session(r, now)
	if !ok {
		return sessionNone
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return sessionOK
	}
	got := r.Header.Get(csrfHeader)
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(c.csrf(payload))) != 1 {
		return sessionNoCSRF
	}
	return sessionOK
}

func (s *Server) consoleRoutes() {
	redirect := func(to string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, http.StatusFound) }
	}
	s.mux.HandleFunc("GET /ui", redirect("/ui/tasks"))
	s.mux.HandleFunc("GET /ui/{$}", redirect("/ui/tasks"))
	s.mux.HandleFunc("GET /ui/login", s.consoleFile("login.html"))
	s.mux.HandleFunc("POST /ui/login", s.consoleErrors(s.login))
	s.mux.HandleFunc("POST /ui/logout", s.consoleErrors(s.logout))
	s.mux.HandleFunc("GET /ui/session", s.consoleErrors(s.showSession))
	for _, page := range []string{"GET /ui/tasks", "GET /ui/tasks/{id}", "GET /ui/dlq", "GET /ui/approvals",
		"GET /ui/agents", "GET /ui/agents/{name}", "GET /ui/tools", "GET /ui/schedules", "GET /ui/cluster"} {
		s.mux.HandleFunc(page, s.consolePage)
	}
	s.mux.HandleFunc("GET /ui/assets/{file}", s.consoleAsset)
}

// consoleErrors answers a console handler's error as JSON, like /v1's.
func (s *Server) consoleErrors(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		consoleHeaders(w)
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	}
}

func consoleHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", consolePolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

// consolePage serves the page shell; without a session it sends the
// browser to the login page first.
func (s *Server) consolePage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.console.session(r, s.cfg.Clock()); !ok {
		http.Redirect(w, r, "/ui/login", http.StatusSeeOther)
		return
	}
	s.consoleFile("index.html")(w, r)
}

func (s *Server) consoleFile(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(s.console.static, name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		consoleHeaders(w)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	}
}

// consoleAsset serves the embedded scripts and styles.
func (s *Server) consoleAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	types := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
	ct, ok := types[path.Ext(name)]
	b, err := fs.ReadFile(s.console.static, "assets/"+name)
	if !ok || err != nil || strings.Contains(name, "/") {
		s.fail(w, r, notFound("no console asset %q", name))
		return
	}
	consoleHeaders(w)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Content-Type", ct)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// LoginRequest is POST /ui/login.
type LoginRequest struct {
	Token string `json:"token"`
}

// SessionView answers POST /ui/login and GET /ui/session: the CSRF token
// the page sends with every write, and when the session ends.
type SessionView struct {
	CSRF      string  `json:"csrf"`
	ExpiresAt *string `json:"expires_at"`
}

// login: POST /ui/login {"token"}. JSON only, so a form on another site
// cannot post it.
func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return badRequest("login takes a JSON body {\"token\": ...} (Content-Type: application/json)")
	}
	var req LoginRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return badRequest("login body: %s", describeJSONError(err))
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(req.Token)))
	if subtle.ConstantTimeCompare(got[:], s.tokenSum[:]) != 1 {
		s.log.Warn("console login refused", "remote", r.RemoteAddr)
		return newError(http.StatusUnauthorized, CodeUnauthorized, "wrong admin token")
	}
	now := s.cfg.Clock()
	value, payload, expires := s.console.newSession(now)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", Expires: expires,
		MaxAge: int(sessionLifetime / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.log.Info("console login", "remote", r.RemoteAddr)
	s.reply(w, http.StatusOK, SessionView{CSRF: s.console.csrf(payload), ExpiresAt: timeView(expires.UnixNano())})
	return nil
}

// logout: POST /ui/logout, with the session's CSRF token; clears the cookie.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	switch s.console.authorize(r, s.cfg.Clock()) {
	case sessionNone:
		return newError(http.StatusUnauthorized, CodeUnauthorized, "not logged in")
	case sessionNoCSRF:
		return newError(http.StatusForbidden, CodeForbidden, "logout needs the session's CSRF token in the %s header", csrfHeader)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// showSession: GET /ui/session, the CSRF token of the cookie's session.
// Only a page of this origin can read the answer.
func (s *Server) showSession(w http.ResponseWriter, r *http.Request) error {
	payload, ok := s.console.session(r, s.cfg.Clock())
	if !ok {
		return newError(http.StatusUnauthorized, CodeUnauthorized, "not logged in")
	}
	exp := time.Unix(int64(binary.BigEndian.Uint64(payload)), 0)
	s.reply(w, http.StatusOK, SessionView{CSRF: s.console.csrf(payload), ExpiresAt: timeView(exp.UnixNano())})
	return nil
}
