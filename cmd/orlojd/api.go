package main

import (
	"net/http"

	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
)

// apiFactory builds the node's HTTP API on host/api. It lives here, not in
// host, because host/api imports host.
func apiFactory() host.APIFactory {
	return func(d host.APIDeps) (http.Handler, error) {
		return api.New(api.Config{
			Node:           d.Node,
			Runtime:        d.Runtime,
			Token:          d.Token,
			Peers:          d.Peers,
			Clock:          d.Clock,
			Logger:         d.Logger,
			MaxBodyBytes:   d.MaxBodyBytes,
			MaxModuleBytes: d.MaxModuleBytes,
			Metrics:        d.Metrics,
		})
	}
}
