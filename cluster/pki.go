package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The cluster's PKI: a CA created by the node that bootstraps the cluster,
// a certificate per node signed by it, and a join token (kubeadm's pattern:
// a secret plus the CA's hash, so a joining node can authenticate the member
// it asks before it holds anything signed). See docs/RATIONALE.md, "Cluster
// security".

// NodeServerName is the DNS name in every node certificate and the name
// every node (and the CLI) verifies: any certificate from the cluster CA
// is a node of this cluster, whatever address it was reached on.
const NodeServerName = "orloj-node"

// Files the PKI keeps in the data dir, all mode 0600.
const (
	CAFile        = "ca.pem"
	CAKeyFile     = "ca-key.pem"
	CertFile      = "node.pem"
	KeyFile       = "node-key.pem"
	JoinTokenFile = "join-token"
)

// joinTokenPrefix names the token format, so a later format can be told
// apart.
const joinTokenPrefix = "orloj1"

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	nodeValidity = 10 * 365 * 24 * time.Hour
)

// ErrNoPKI is returned by LoadPKI for a data dir without a node certificate.
var ErrNoPKI = errors.New("no node certificate in the data dir")

// ErrBadJoinToken is a join token that does not parse.
var ErrBadJoinToken = errors.New("malformed join token")

// PKI is one node's credentials: the cluster CA (certificate and key), this
// node's certificate and key, and the cluster's join token.
type PKI struct {
	caCert   *x509.Certificate
	caKey    *ecdsa.PrivateKey
	caPEM    []byte
	caKeyPEM []byte
	cert     tls.Certificate // leaf, then the CA: the chain a joining node checks
	leaf     *x509.Certificate
	pool     *x509.CertPool
	token    JoinToken
}

// JoinToken is what a joining node needs: the SHA-256 of the cluster CA's
// certificate (DER) and the secret the leader checks.
type JoinToken struct {
	CAHash [sha256.Size]byte
	Secret string
}

// String is the token's text form: orloj1.<ca sha256 hex>.<secret hex>.
func (t JoinToken) String() string {
	return joinTokenPrefix + "." + hex.EncodeToString(t.CAHash[:]) + "." + t.Secret
}

// SecretMatches compares the secrets in constant time.
func (t JoinToken) SecretMatches(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(t.Secret), []byte(secret)) == 1
}

// ParseJoinToken reads the text form String writes.
func ParseJoinToken(s string) (JoinToken, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 3 || parts[0] != joinTokenPrefix {
		return JoinToken{}, fmt.Errorf("%w: want %s.<CA hash>.<secret>", ErrBadJoinToken, joinTokenPrefix)
	}
	var t JoinToken
	h, err := hex.DecodeString(parts[1])
	if err != nil || len(h) != sha256.Size {
		return JoinToken{}, fmt.Errorf("%w: the CA hash is not 64 hex digits", ErrBadJoinToken)
	}
	copy(t.CAHash[:], h)
	if sec, err := hex.DecodeString(parts[2]); err != nil || len(sec) < 16 {
		return JoinToken{}, fmt.Errorf("%w: the secret is not at least 32 hex digits", ErrBadJoinToken)
	}
	t.Secret = parts[2]
	return t, nil
}

// LoadPKI reads the credentials in dir; ErrNoPKI when there is no node
// certificate.
func LoadPKI(dir string) (*PKI, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", filepath.Join(dir, name), err)
		}
		return b, nil
	}
	certPEM, err := read(CertFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w (%s)", ErrNoPKI, filepath.Join(dir, CertFile))
	}
	if err != nil {
		return nil, err
	}
	var files [4][]byte
	for i, name := range []string{KeyFile, CAFile, CAKeyFile, JoinTokenFile} {
		if files[i], err = read(name); err != nil {
			return nil, fmt.Errorf("node certificate without its companion files: %w", err)
		}
	}
	return newPKI(certPEM, files[0], files[1], files[2], string(files[3]))
}

func newPKI(certPEM, keyPEM, caPEM, caKeyPEM []byte, token string) (*PKI, error) {
	p := &PKI{caPEM: caPEM, caKeyPEM: caKeyPEM}
	var err error
	if p.caCert, err = parseCertPEM(caPEM); err != nil {
		return nil, fmt.Errorf("cluster CA: %w", err)
	}
	if !p.caCert.IsCA {
		return nil, errors.New("cluster CA: the certificate is not a CA")
	}
	if p.caKey, err = parseKeyPEM(caKeyPEM); err != nil {
		return nil, fmt.Errorf("cluster CA key: %w", err)
	}
	if !p.caKey.PublicKey.Equal(p.caCert.PublicKey) {
		return nil, errors.New("cluster CA key does not match the CA certificate")
	}
	if p.leaf, err = parseCertPEM(certPEM); err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	if !key.PublicKey.Equal(p.leaf.PublicKey) {
		return nil, errors.New("node key does not match the node certificate")
	}
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.caCert)
	if _, err := p.leaf.Verify(x509.VerifyOptions{Roots: p.pool, DNSName: NodeServerName,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("node certificate does not verify against the cluster CA: %w", err)
	}
	p.cert = tls.Certificate{Certificate: [][]byte{p.leaf.Raw, p.caCert.Raw}, PrivateKey: key, Leaf: p.leaf}
	if p.token, err = ParseJoinToken(token); err != nil {
		return nil, fmt.Errorf("join token file: %w", err)
	}
	if p.token.CAHash != sha256.Sum256(p.caCert.Raw) {
		return nil, errors.New("join token file names another CA than ca.pem")
	}
	return p, nil
}

// BootstrapPKI creates a cluster CA, this node's certificate and a join
// token, and writes them to dir. hosts are the node's addresses (host or
// host:port); they go into the certificate as SANs.
func BootstrapPKI(dir, nodeID string, hosts []string) (*PKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "orloj cluster CA", Organization: []string{"orloj"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	caKeyPEM, err := keyPEM(caKey)
	if err != nil {
		return nil, err
	}
	ca := &PKI{caCert: caCert, caKey: caKey, caPEM: certPEM(caDER), caKeyPEM: caKeyPEM}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("generate join secret: %w", err)
	}
	ca.token = JoinToken{CAHash: sha256.Sum256(caDER), Secret: hex.EncodeToString(secret)}

	nodeKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	leafPEM, err := ca.issue(&nodeKey.PublicKey, nodeID, hosts)
	if err != nil {
		return nil, err
	}
	nodeKeyPEM, err := keyPEM(nodeKey)
	if err != nil {
		return nil, err
	}
	return InstallPKI(dir, leafPEM, nodeKeyPEM, ca.caPEM, ca.caKeyPEM, ca.token.String())
}

// InstallPKI checks the credentials and writes them to dir (0600 each), the
// node certificate last: LoadPKI finds all of them or none.
func InstallPKI(dir string, certPEM, keyPEM, caPEM, caKeyPEM []byte, token string) (*PKI, error) {
	p, err := newPKI(certPEM, keyPEM, caPEM, caKeyPEM, token)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	for _, f := range []struct {
		name string
		b    []byte
	}{{CAFile, caPEM}, {CAKeyFile, caKeyPEM}, {KeyFile, keyPEM}, {JoinTokenFile, []byte(p.token.String() + "\n")}, {CertFile, certPEM}} {
		if err := writeFile0600(filepath.Join(dir, f.name), f.b); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
	}
	return p, nil
}

// Sign issues a node certificate for the public key in csrDER (a PKCS#10
// request; its signature proves the requester holds the key). The subject
// is nodeID whatever the request says.
func (p *PKI) Sign(csrDER []byte, nodeID string, hosts []string) (certPEM []byte, err error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature: %w", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, errors.New("certificate request: want an ECDSA P-256 key")
	}
	return p.issue(pub, nodeID, hosts)
}

func (p *PKI) issue(pub *ecdsa.PublicKey, nodeID string, hosts []string) ([]byte, error) {
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"orloj"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(nodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{NodeServerName},
	}
	seen := map[string]bool{NodeServerName: true}
	for _, h := range hosts {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if h == "" || seen[h] {
			continue
		}
		seen[h] = true
		if ip := net.ParseIP(h); ip != nil {
			if !ip.IsUnspecified() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			}
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, pub, p.caKey)
	if err != nil {
		return nil, fmt.Errorf("sign node certificate: %w", err)
	}
	return certPEM(der), nil
}

// NewCSR makes a key for a joining node and a certificate request for it.
func NewCSR(nodeID string) (csrDER, keyPEMBytes []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: nodeID}}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	if keyPEMBytes, err = keyPEM(key); err != nil {
		return nil, nil, err
	}
	return csrDER, keyPEMBytes, nil
}

// JoinToken is the cluster's join token.
func (p *PKI) JoinToken() JoinToken { return p.token }

// CAPEM is the cluster CA certificate, PEM.
func (p *PKI) CAPEM() []byte { return p.caPEM }

// CAKeyPEM is the cluster CA key, PEM: handed to joining nodes so any
// future leader can sign joins.
func (p *PKI) CAKeyPEM() []byte { return p.caKeyPEM }

// NodeID is the node ID this node's certificate names.
func (p *PKI) NodeID() string { return p.leaf.Subject.CommonName }

// ServerTLS is the TLS configuration of a node's listeners. clientAuth is
// tls.RequireAndVerifyClientCert for Raft, tls.VerifyClientCertIfGiven for
// internal HTTP (a joining node has no certificate yet; handlers decide)
// and tls.NoClientCert for the API.
func (p *PKI) ServerTLS(clientAuth tls.ClientAuthType) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert},
		ClientCAs:    p.pool,
		ClientAuth:   clientAuth,
		MinVersion:   tls.VersionTLS13,
	}
}

// ClientTLS is the TLS configuration a node dials other nodes with.
func (p *PKI) ClientTLS() *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{p.cert},
		RootCAs:      p.pool,
		ServerName:   NodeServerName,
		MinVersion:   tls.VersionTLS13,
	}
}

// PeerNodeID returns the node ID of a peer whose certificate chain was
// verified against the cluster CA in cs, or false.
func PeerNodeID(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", false
	}
	return cs.VerifiedChains[0][0].Subject.CommonName, true
}

// ErrCAMismatch is a member whose certificate does not chain to the CA a
// join token names.
var ErrCAMismatch = errors.New("the member's certificate is not from the CA the join token names")

// JoinClientTLS is the TLS configuration of a node that has no certificate
// yet: it trusts the server only if the chain it sends holds a CA whose
// SHA-256 is the token's, and the leaf verifies against that CA.
func JoinClientTLS(t JoinToken) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is verified below, against the CA the token pins.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return fmt.Errorf("%w: it sent none", ErrCAMismatch)
			}
			var ca *x509.Certificate
			for _, der := range raw[1:] {
				if sha256.Sum256(der) == t.CAHash {
					c, err := x509.ParseCertificate(der)
					if err == nil && c.IsCA {
						ca = c
					}
				}
			}
			if ca == nil {
				return ErrCAMismatch
			}
			leaf, err := x509.ParseCertificate(raw[0])
			if err != nil {
				return fmt.Errorf("%w: %w", ErrCAMismatch, err)
			}
			pool := x509.NewCertPool()
			pool.AddCert(ca)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: NodeServerName}); err != nil {
				return fmt.Errorf("%w: %w", ErrCAMismatch, err)
			}
			return nil
		},
	}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the platform has no randomness
	}
	return n
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func keyPEM(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func parseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "EC PRIVATE KEY" {
		return nil, errors.New("not a PEM EC private key")
	}
	return x509.ParseECPrivateKey(blk.Bytes)
}

// writeFile0600 writes a secret owner-only, atomically.
func writeFile0600(path string, b []byte) error { return WriteFileAtomic(path, b, 0o600) }

// WriteFileAtomic writes through a temporary file, an fsync and a rename,
// so a crash leaves the old content or the new, never half of it. The node
// keeps its secrets and small state files in the data dir this way.
func WriteFileAtomic(path string, b []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // fails harmlessly after the rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
