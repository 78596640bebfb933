// Package s3test starts a real S3-compatible server (versitygw with a posix
// backend in a temporary directory) on 127.0.0.1 for tests, and a counting,
// fault-injecting proxy in front of it.
//
// The server binary is found in $CACHECLIP_VERSITYGW, on PATH, or in
// ~/.cache/cacheclip/bin (where .ci/run installs it). Without it a test skips,
// unless CACHECLIP_REQUIRE_S3=1 (set by CI), when it fails.
package s3test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"cacheclip/kvshards/s3store"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Server is a running versitygw.
type Server struct {
	Endpoint  string // http://127.0.0.1:PORT
	Root      string // posix backend directory: Root/<bucket>/<object path>
	AccessKey string
	SecretKey string
}

// Binary returns the versitygw path, or "" when there is none.
func Binary() string {
	if p := os.Getenv("CACHECLIP_VERSITYGW"); p != "" {
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "cacheclip", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start runs versitygw for the test's lifetime.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary()
	if bin == "" {
		msg := "versitygw not found (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, or set CACHECLIP_VERSITYGW)"
		if os.Getenv("CACHECLIP_REQUIRE_S3") != "" {
			t.Fatal(msg + "; CACHECLIP_REQUIRE_S3 is set")
		}
		t.Skip(msg)
	}
	s := &Server{Root: t.TempDir(), AccessKey: "cacheclip-test", SecretKey: "cacheclip-test-secret"}
	port := freePort(t)
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", port)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--port", fmt.Sprintf("127.0.0.1:%d", port), "--access", s.AccessKey, "--secret", s.SecretKey, "--quiet", "posix", s.Root)
	logf, err := os.Create(filepath.Join(t.TempDir(), "versitygw.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// The server dies with the test binary, even when a timeout panics it
	// past the cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start versitygw: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("versitygw did not listen on port %d: %v\n%s", port, err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *Server) client(t testing.TB) *minio.Client {
	t.Helper()
	u, _ := url.Parse(s.Endpoint)
	mc, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

// MakeBucket creates a bucket.
func (s *Server) MakeBucket(t testing.TB, name string) {
	t.Helper()
	if err := s.client(t).MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("make bucket %s: %v", name, err)
	}
}

// Put writes an object through the S3 API.
func (s *Server) Put(t testing.TB, bucket, key string, body []byte) {
	t.Helper()
	if _, err := s.client(t).PutObject(context.Background(), bucket, key, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s/%s: %v", bucket, key, err)
	}
}

// Config reaches the server at endpoint (the server's own, or a proxy's).
func (s *Server) Config(endpoint string) s3store.Config {
	return s3store.Config{Endpoint: endpoint, Region: "us-east-1", AccessKey: s.AccessKey, SecretKey: s.SecretKey, PathStyle: true}
}

// Env is the environment a cacheclip process needs to reach endpoint.
func (s *Server) Env(endpoint string) []string {
	return []string{"AWS_ENDPOINT_URL=" + endpoint, "AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// Proxy forwards to the server, counts successful PUTs per object name and
// can fail or stall requests.
type Proxy struct {
	URL string

	mu   sync.Mutex
	puts map[string]int // object path (bucket/key) -> successful PUTs

	down atomic.Bool // refuse every request (connection closed, no answer)
	// downAfter, when positive, sets down once that many requests passed.
	downAfter, reqs atomic.Int64
	// noConditional refuses If-None-Match with 501 NotImplemented, as
	// servers without conditional create do.
	noConditional atomic.Bool
	// stall, when set, is called with a PUT whose path matches and whose body
	// is half forwarded; the request then hangs until its client goes away.
	stall atomic.Pointer[stallRule]
}

type stallRule struct {
	skip    atomic.Int64 // matching PUTs let through before the stalled one
	suffix  string
	hit     chan string
	release chan struct{}
	once    sync.Once
}

// NewProxy starts a proxy in front of s for the test's lifetime.
func NewProxy(t testing.TB, s *Server) *Proxy {
	u, _ := url.Parse(s.Endpoint)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &Proxy{puts: map[string]int{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := p.downAfter.Load(); n > 0 && p.reqs.Add(1) > n {
			p.down.Store(true)
		}
		if p.down.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		if p.noConditional.Load() && r.Header.Get("If-None-Match") != "" {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotImplemented)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not implemented</Message></Error>`)
			return
		}
		if rule := p.stall.Load(); rule != nil && r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, rule.suffix) && r.ContentLength > 1 && rule.skip.Add(-1) < 0 {
			r.Body = &stallBody{r: r.Body, left: r.ContentLength / 2, rule: rule, path: r.URL.Path, ctx: r.Context()}
		}
		rec := &statusWriter{ResponseWriter: w, code: 200}
		rp.ServeHTTP(rec, r)
		if r.Method == http.MethodPut && rec.code == 200 && r.URL.Query().Get("uploadId") == "" {
			p.mu.Lock()
			p.puts[strings.TrimPrefix(r.URL.Path, "/")]++
			p.mu.Unlock()
		}
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// SetDown makes the proxy drop every connection (the worker lost its network).
func (p *Proxy) SetDown(down bool) {
	p.downAfter.Store(0)
	p.down.Store(down)
}

// DownAfter lets n more requests through, then drops every connection.
func (p *Proxy) DownAfter(n int) {
	p.reqs.Store(0)
	p.downAfter.Store(int64(n))
}

// RefuseConditional makes the server look like one without conditional
// create: a request with If-None-Match gets 501 NotImplemented.
func (p *Proxy) RefuseConditional(on bool) { p.noConditional.Store(on) }

// StallPut lets skip PUTs whose path ends in suffix through and makes the
// next one stop half way; the returned channel receives its path then. release ends the stall: the
// request is aborted with half its body sent to the server, as when the
// client dies mid-upload.
func (p *Proxy) StallPut(suffix string, skip int) (hit <-chan string, release func()) {
	r := &stallRule{suffix: suffix, hit: make(chan string, 1), release: make(chan struct{})}
	r.skip.Store(int64(skip))
	p.stall.Store(r)
	var once sync.Once
	return r.hit, func() { once.Do(func() { close(r.release) }) }
}

// Puts returns the successful PUT count of every object whose path ends in suffix.
func (p *Proxy) Puts(suffix string) map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k, n := range p.puts {
		if strings.HasSuffix(k, suffix) {
			out[k] = n
		}
	}
	return out
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type stallBody struct {
	r    io.ReadCloser
	left int64
	rule *stallRule
	path string
	ctx  context.Context
}

func (b *stallBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		fired := false
		b.rule.once.Do(func() { fired = true; b.rule.hit <- b.path })
		if fired {
			select {
			case <-b.rule.release:
			case <-b.ctx.Done():
			}
			return 0, io.ErrUnexpectedEOF
		}
		return b.r.Read(p)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *stallBody) Close() error { return b.r.Close() }
