// Command stepserver is a stand-in for the benchmark's step server, for
// trying the peer by hand: it answers 200 at once to any POST and 405 to
// anything else. It lives under testdata so that go build ./... skips it;
// run it with go run ./testdata/stepserver -addr 127.0.0.1:8081.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address (loopback)")
	flag.Parse()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	log.Fatal(http.ListenAndServe(*addr, h))
}
