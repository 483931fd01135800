// Command standins runs the stand-in services of package standins in their
// own process, for the demo and for trying agents by hand, and talks to a
// running one so scripts need neither curl nor jq.
//
//	standins [-addr 127.0.0.1:0]          serve; print the base URL once listening
//	standins -url URL -fail-records N     make the next N record writes answer 503
//	standins -url URL -counts             print what the services received, as JSON
//	standins -url URL -summary            print it as one line
//	standins -url URL -support            print the support agent's services' counts as one line
//	standins -url URL -hold POINT         hold requests at POINT (order, customer, reply,
//	                                      refund, refund_applied, model_turn_1..3) until released
//	standins -url URL -wait-held POINT    wait (up to 60 s) until a request is held at POINT
//	standins -url URL -release POINT      let the requests held at POINT through
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
	neturl "net/url"
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
	support := flag.Bool("support", false, "with -url: print the support services' counters as one line")
	hold := flag.String("hold", "", "with -url: hold requests at this point until released")
	waitHeld := flag.String("wait-held", "", "with -url: wait until a request is held at this point")
	release := flag.String("release", "", "with -url: release the requests held at this point")
	flag.Parse()
	var err error
	switch {
	case *url == "":
		err = serve(*addr)
	case *fail >= 0:
		err = post(*url + "/fail-records?n=" + strconv.Itoa(*fail))
	case *hold != "":
		err = post(*url + "/hold?at=" + neturl.QueryEscape(*hold))
	case *release != "":
		err = post(*url + "/release?at=" + neturl.QueryEscape(*release))
	case *waitHeld != "":
		err = waitForHold(*url, *waitHeld)
	case *support:
		err = printSupport(*url)
	case *counts || *summary:
		err = printCounts(*url, *summary)
	default:
		err = errors.New("-url needs -fail-records, -counts, -summary, -support, -hold, -wait-held or -release")
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

// waitForHold polls until a request is held at the point: the demo kills
// the node then, knowing what is in flight.
func waitForHold(url, at string) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(url + "/held?at=" + neturl.QueryEscape(at))
		if err != nil {
			return err
		}
		var h struct{ Held int }
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s/held?at=%s: %s %v", url, at, resp.Status, err)
		}
		if h.Held > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no request reached %s within 60 s", at)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval
	}
}

func getCounts(url string) (standins.Counts, error) {
	var c standins.Counts
	resp, err := client.Get(url + "/counts")
	if err != nil {
		return c, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return c, fmt.Errorf("GET %s/counts: %w", url, err)
	}
	return c, nil
}

func printSupport(url string) error {
	c, err := getCounts(url)
	if err != nil {
		return err
	}
	t := c.SupportModelTurns
	fmt.Printf("shop lookups %d; helpdesk requests %d, replies written %d; payments requests %d, refunds applied %d; model requests %d, per turn %d %d %d\n",
		c.Shop, c.ReplyRequests, c.RepliesWritten, c.RefundRequests, c.RefundsApplied, c.SupportModel, t[0], t[1], t[2])
	return nil
}

func printCounts(url string, oneLine bool) error {
	c, err := getCounts(url)
	if err != nil {
		return err
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
