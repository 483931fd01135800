//go:build !wasip1

package orloj

import (
	"errors"
	"sync"
)

// In a native build the host is whichever Fake is installed, if any.
var (
	installMu sync.Mutex
	installed *Fake
)

// errNoHost is what every call returns in a native build with no Fake
// installed: there is nothing to talk to, and pretending otherwise would hide
// a test that forgot its set-up.
var errNoHost = errors.New("no host: a native build talks to an installed Fake (orloj.NewFake().Install()); build with GOOS=wasip1 GOARCH=wasm to run under Orloj")

func host() (rawHost, error) {
	installMu.Lock()
	defer installMu.Unlock()
	if installed == nil {
		return nil, errNoHost
	}
	return (*fakeHost)(installed), nil
}
