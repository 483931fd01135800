package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/orloj/orloj/cluster"
)

const envCAFile = "ORLOJ_CA_FILE"

// httpClient is the CLI's HTTP client. For an https:// address it trusts
// the cluster CA: --ca-file, $ORLOJ_CA_FILE, else DATA_DIR/ca.pem when a
// node on this machine wrote one, else the system's roots. A node's
// certificate names the node's addresses and cluster.NodeServerName; either
// is accepted, so a node reached by another name still verifies.
func (o *clientOptions) httpClient(base string) (*http.Client, error) {
	if !strings.HasPrefix(base, "https://") {
		return &http.Client{}, nil
	}
	path := firstNonEmpty(o.caFile, os.Getenv(envCAFile))
	explicit := path != ""
	if !explicit {
		path = filepath.Join(firstNonEmpty(o.dataDir, os.Getenv(envDataDir), defaultDataDir), cluster.CAFile)
	}
	pem, err := os.ReadFile(path)
	switch {
	case err != nil && explicit:
		return nil, usagef("--ca-file: %v", err)
	case err != nil:
		return &http.Client{}, nil // the system's roots
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, usagef("CA file %s holds no PEM certificate", path)
	}
	u, _ := url.Parse(base)
	host := u.Hostname()
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verified below against the pool, by either name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the API sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			var first error
			for _, name := range []string{host, cluster.NodeServerName} {
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, DNSName: name})
				if err == nil {
					return nil
				}
				if first == nil {
					first = err
				}
			}
			return fmt.Errorf("the API's certificate is not from the CA in %s: %w", path, first)
		},
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}
