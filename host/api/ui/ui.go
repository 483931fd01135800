// Package ui holds the web console's static files: plain HTML, CSS and
// JavaScript written for Orloj, no build step and no third-party code.
// host/api serves them under /ui.
package ui

import "embed"

// Files holds static/: the page shell (index.html), the login page and
// assets/ (app.js, login.js, app.css).
//
//go:embed static
var Files embed.FS
