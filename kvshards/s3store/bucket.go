// Package s3store shares a KV shard store through S3-compatible object
// storage: shards live under s3://bucket/prefix with the local store's layout,
// and every worker keeps a local disk tier (a kvshards.Store bounded by size,
// least recently used shards evicted) that it maps shards from. Downloads are
// verified before they reach the tier; builds are written through with a
// conditional create, so many workers can share one prefix. The layout is
// described in docs/SHARD_FORMAT.md.
package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Scheme prefixes a store location that names object storage.
const Scheme = "s3://"

// IsURL reports whether store names an object store rather than a directory.
func IsURL(store string) bool { return strings.HasPrefix(store, Scheme) }

// Location is a parsed s3://bucket/prefix.
type Location struct {
	Bucket, Prefix string // Prefix has no leading or trailing slash
}

func (l Location) String() string {
	if l.Prefix == "" {
		return Scheme + l.Bucket
	}
	return Scheme + l.Bucket + "/" + l.Prefix
}

// ParseURL parses s3://bucket[/prefix].
func ParseURL(s string) (Location, error) {
	if !IsURL(s) {
		return Location{}, fmt.Errorf("store %q: not an s3:// URL", s)
	}
	rest := strings.TrimPrefix(s, Scheme)
	b, p, _ := strings.Cut(rest, "/")
	p = strings.Trim(p, "/")
	if b == "" {
		return Location{}, fmt.Errorf("store %q: no bucket name (want s3://bucket/prefix)", s)
	}
	if strings.ContainsAny(b, " \\?#") || strings.Contains(p, "//") || strings.ContainsAny(p, "?#\\") {
		return Location{}, fmt.Errorf("store %q: bucket or prefix has characters an object key cannot hold", s)
	}
	return Location{Bucket: b, Prefix: p}, nil
}

// key is the object name of rel under the location's prefix.
func (l Location) key(rel string) string {
	if l.Prefix == "" {
		return rel
	}
	return l.Prefix + "/" + rel
}

// Config says how to reach the server. FromEnv fills it the way AWS tools do.
type Config struct {
	Endpoint  string // URL ("http://127.0.0.1:7070") or host:port; empty: AWS S3
	Region    string
	AccessKey string
	SecretKey string
	Profile   string // shared credentials profile, used when no keys are given
	// PathStyle addresses buckets as endpoint/bucket (S3-compatible servers);
	// otherwise virtual-host style is used where the endpoint allows it.
	PathStyle bool
	// Transport, if set, carries the requests (tests count them through it).
	Transport http.RoundTripper
}

// FromEnv reads AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_S3), AWS_REGION (or
// AWS_DEFAULT_REGION), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and
// AWS_PROFILE. A custom endpoint is addressed path-style, as S3-compatible
// servers expect.
func FromEnv() Config {
	c := Config{
		Endpoint:  firstEnv("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
		Region:    firstEnv("AWS_REGION", "AWS_DEFAULT_REGION"),
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"),
		SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		Profile:   os.Getenv("AWS_PROFILE"),
	}
	c.PathStyle = c.Endpoint != ""
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	return c
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}

// bucket is the object-store side: a minio client on one bucket and prefix.
type bucket struct {
	mc  *minio.Client
	loc Location
	// conditional is whether the server honours If-None-Match: * on PUT
	// (probed at open); without it a create is HEAD-then-PUT.
	conditional bool
}

func newBucket(ctx context.Context, loc Location, c Config) (*bucket, error) {
	host, secure := "s3.amazonaws.com", true
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || u.Host == "" {
			u, err = url.Parse("https://" + c.Endpoint)
			if err != nil || u.Host == "" {
				return nil, fmt.Errorf("endpoint %q (AWS_ENDPOINT_URL): not a URL or host:port", c.Endpoint)
			}
		}
		host, secure = u.Host, u.Scheme != "http"
	}
	var creds *credentials.Credentials
	switch {
	case c.AccessKey != "" || c.SecretKey != "":
		creds = credentials.NewStaticV4(c.AccessKey, c.SecretKey, "")
	default:
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{},
			&credentials.FileAWSCredentials{Profile: c.Profile},
			&credentials.IAM{},
		})
	}
	lookup := minio.BucketLookupAuto
	if c.PathStyle {
		lookup = minio.BucketLookupPath
	}
	mc, err := minio.New(host, &minio.Options{Creds: creds, Secure: secure, Region: c.Region, BucketLookup: lookup,
		Transport: c.Transport,
		// One try per call: the store retries with its own backoff and knows
		// which failures mean "server unreachable" (see Store.do).
		MaxRetries: 1})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", loc, err)
	}
	b := &bucket{mc: mc, loc: loc}
	var ok bool
	err = retry(ctx, 4, 100*time.Millisecond, func() (err error) {
		ok, err = mc.BucketExists(ctx, loc.Bucket)
		return err
	})
	if transient(err) {
		return nil, fmt.Errorf("store %s: bucket check at %s: %w: %w", loc, host, ErrUnreachable, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: bucket check at %s: %w", loc, host, err)
	}
	if !ok {
		return nil, fmt.Errorf("store %s: bucket %q does not exist at %s", loc, loc.Bucket, host)
	}
	return b, nil
}

// probeObject is written (once, never removed) to learn whether the server
// honours If-None-Match: a fixed name, because removing per-worker probes
// races with other workers' writes on file-backed servers (an emptied
// directory is removed under a concurrent create).
const probeObject = ".cacheclip-probe"

// probeConditional writes the probe object twice with If-None-Match: *; a
// server that honours it refuses the second write (and the first, when
// another worker wrote it before).
func (b *bucket) probeConditional(ctx context.Context) error {
	key := b.loc.key(probeObject)
	body := []byte("cacheclip conditional-create probe\n")
	put := func() error {
		return retry(ctx, 4, 100*time.Millisecond, func() error { _, err := b.put(ctx, key, body, true, nil); return err })
	}
	if err := put(); err != nil && !isPrecondition(err) {
		if notImplemented(err) {
			b.conditional = false // refused rather than ignored
			return nil
		}
		return err
	}
	err := put()
	b.conditional = isPrecondition(err)
	if err != nil && !b.conditional {
		return err
	}
	return nil
}

// put writes body to key in one request (never multipart: a single PUT is
// visible whole or not at all). ifAbsent adds If-None-Match: *.
func (b *bucket) put(ctx context.Context, key string, body []byte, ifAbsent bool, meta map[string]string) (minio.UploadInfo, error) {
	opts := minio.PutObjectOptions{DisableMultipart: true, SendContentMd5: true, ContentType: "application/octet-stream", UserMetadata: meta}
	if ifAbsent {
		opts.SetMatchETagExcept("*")
	}
	return b.mc.PutObject(ctx, b.loc.Bucket, key, bytes.NewReader(body), int64(len(body)), opts)
}

// get reads a whole object; a missing one is errNoObject.
func (b *bucket) get(ctx context.Context, key string) ([]byte, error) {
	o, err := b.mc.GetObject(ctx, b.loc.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, mapErr(err)
	}
	defer o.Close()
	data, err := io.ReadAll(o)
	if err != nil {
		return nil, mapErr(err)
	}
	return data, nil
}

func (b *bucket) stat(ctx context.Context, key string) (minio.ObjectInfo, error) {
	info, err := b.mc.StatObject(ctx, b.loc.Bucket, key, minio.StatObjectOptions{})
	return info, mapErr(err)
}

func (b *bucket) remove(ctx context.Context, key string) error {
	return mapErr(b.mc.RemoveObject(ctx, b.loc.Bucket, key, minio.RemoveObjectOptions{}))
}

// list streams every object under rel (recursive).
func (b *bucket) list(ctx context.Context, rel string, fn func(minio.ObjectInfo) error) error {
	prefix := b.loc.key(rel)
	if rel == "" && b.loc.Prefix != "" {
		prefix = b.loc.Prefix + "/"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for o := range b.mc.ListObjects(ctx, b.loc.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return fmt.Errorf("list %s: %w", b.loc, mapErr(o.Err))
		}
		if err := fn(o); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// rel is key relative to the location's prefix.
func (b *bucket) rel(key string) string {
	if b.loc.Prefix == "" {
		return key
	}
	return strings.TrimPrefix(key, b.loc.Prefix+"/")
}

var errNoObject = errors.New("no such object")

func mapErr(err error) error {
	if err == nil {
		return nil
	}
	switch minio.ToErrorResponse(err).Code {
	case "NoSuchKey", "NotFound":
		return fmt.Errorf("%w: %v", errNoObject, err)
	}
	return err
}

func isPrecondition(err error) bool {
	if err == nil {
		return false
	}
	r := minio.ToErrorResponse(err)
	return r.Code == "PreconditionFailed" || r.StatusCode == http.StatusPreconditionFailed
}

func notImplemented(err error) bool {
	r := minio.ToErrorResponse(err)
	return r.Code == "NotImplemented" || r.StatusCode == http.StatusNotImplemented
}

// isNotFound reports a missing object.
func isNotFound(err error) bool { return errors.Is(err, errNoObject) }

// transient reports an error worth retrying: no answer, or a server error.
func transient(err error) bool {
	if err == nil || isNotFound(err) || isPrecondition(err) || errors.Is(err, context.Canceled) {
		return false
	}
	r := minio.ToErrorResponse(err)
	if r.Code == "" {
		return true // no S3 error body: the connection failed
	}
	return r.StatusCode >= 500 || r.StatusCode == http.StatusTooManyRequests || r.Code == "SlowDown" || r.Code == "RequestTimeout"
}

// shardObject is the object name of a shard, relative to the prefix: the
// local store's fan-out layout, so a prefix can be copied to or from a
// directory with ordinary tools.
func shardObject(k string) string { return path.Join(k[0:2], k[2:4], k+".kvs") }

// usedObject is the shard's last-use sidecar (empty; its LastModified is the
// time a worker last downloaded the shard).
func usedObject(k string) string { return path.Join(k[0:2], k[2:4], k+".used") }

// lockObject is the build lock of a shard (holder in its body).
func lockObject(k string) string { return path.Join(k[0:2], k[2:4], k+".lock") }

// retry runs op up to attempts times while it fails transiently.
func retry(ctx context.Context, attempts int, base time.Duration, op func() error) error {
	var err error
	for a := 1; a <= attempts; a++ {
		if err = op(); !transient(err) || a == attempts {
			return err
		}
		if e := backoff(ctx, base, a); e != nil {
			return e
		}
	}
	return err
}

// backoff sleeps before retry attempt (1-based) unless ctx ends.
func backoff(ctx context.Context, base time.Duration, attempt int) error {
	d := base << (2 * (attempt - 1)) // 1×, 4×, 16× …
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// DefaultCacheDir is the local tier used when none is named:
// <user cache dir>/cacheclip/shards/<bucket>/<prefix>.
func DefaultCacheDir(loc Location) (string, error) {
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("store %s: no --store-cache given and no user cache directory: %w", loc, err)
	}
	return path.Join(d, "cacheclip", "shards", loc.Bucket, loc.Prefix), nil
}
