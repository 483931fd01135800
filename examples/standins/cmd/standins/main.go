// Command standins runs the stand-in services of package standins in their
// own process, for the demo and for trying agents by hand, and talks to a
// running one so scripts need neither curl nor jq.
//
//	standins [-addr 127.0.0.1:0]          serve; print the base URL once listening
//	standins -url URL -fail-records N     make the next N record writes answer 503
//	standins -url URL -counts             print what the services received, as JSON
//	standins -url URL -summary            print it as one line
//
// The server stops on SIGINT or SIGTERM.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/orloj/orloj/examples/standins"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to serve on (port 0 picks a free one)")
	url := flag.String("url", "", "base URL of running stand-ins to talk to, instead of serving")
	fail := flag.Int("fail-records", -1, "with -url: make the next N record writes answer 503")
	counts := flag.Bool("counts", false, "with -url: print the request counters as JSON")
	summary := flag.Bool("summary", false, "with -url: print the request counters as one line")
	flag.Parse()
	var err error
	switch {
	case *url == "":
		err = serve(*addr)
	case *fail >= 0:
		err = post(*url + "/fail-records?n=" + strconv.Itoa(*fail))
	case *counts || *summary:
		err = printCounts(*url, *summary)
	default:
		err = errors.New("-url needs -fail-records, -counts or -summary")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "standins:", err)
		os.Exit(1)
	}
}

func serve(addr string) error {
	s, err := standins.Start(addr)
	if err != nil {
		return err
	}
	fmt.Println(s.URL)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return s.Close()
}

var client = &http.Client{Timeout: 10 * time.Second}

func post(url string) error {
	resp, err := client.Post(url, "application/json", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, b)
	}
	return nil
}

func printCounts(url string, oneLine bool) error {
	resp, err := client.Get(url + "/counts")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var c standins.Counts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return fmt.Errorf("GET %s/counts: %w", url, err)
	}
	if !oneLine {
		b, _ := json.Marshal(c)
		fmt.Println(string(b))
		return nil
	}
	fmt.Printf("blob %d, ocr %d, model %d, records %d requests; %d records written; %d duplicate effects\n",
		c.Blob, c.OCR, c.Model, c.Records, c.RecordEffects, c.DuplicateKeys)
	return nil
}
