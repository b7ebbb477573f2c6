// Package s3 is the data lake on Amazon S3 or an S3-compatible store: a
// lake.Target over a bucket and prefix, with aws-sdk-go-v2. It is named
// after its outside dependency.
//
// Each file is one PutObject, which S3 makes visible all at once, and
// durable when it returns. Credentials and region come from the usual AWS
// settings (environment, shared files, instance or task role); Endpoint
// points at an S3-compatible store (MinIO, Ceph …) with path-style
// addressing.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/plinth-data/plinth/lake"
)

// Options tune Open.
type Options struct {
	// Endpoint is the URL of an S3-compatible store; empty means AWS.
	Endpoint string
}

// Target is a lake in s3://bucket/prefix.
type Target struct {
	client *awss3.Client
	bucket string
	prefix string // "" or ending in "/"
	url    string
}

// IsURL reports whether s names an S3 lake (s3://…).
func IsURL(s string) bool { return strings.HasPrefix(s, "s3://") }

// Open returns the target of an s3://bucket/prefix URL.
func Open(ctx context.Context, rawURL string, opts Options) (*Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "s3" || u.Host == "" {
		return nil, fmt.Errorf("lake %q: use s3://bucket/prefix", rawURL)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("lake %s: AWS configuration: %w", rawURL, err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := awss3.NewFromConfig(cfg, func(o *awss3.Options) {
		if opts.Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.Endpoint)
			o.UsePathStyle = true
			// Compatible stores differ in the checksums they know;
			// send and check them only where S3 requires them.
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return &Target{client: client, bucket: u.Host, prefix: prefix, url: "s3://" + u.Host + "/" + prefix}, nil
}

func (t *Target) String() string { return t.url }

// Put writes an object with one PutObject.
func (t *Target) Put(ctx context.Context, key string, body []byte) error {
	return t.put(ctx, key, bytes.NewReader(body), int64(len(body)))
}

func (t *Target) put(ctx context.Context, key string, body io.ReadSeeker, size int64) error {
	_, err := t.client.PutObject(ctx, &awss3.PutObjectInput{
		Bucket:        aws.String(t.bucket),
		Key:           aws.String(t.prefix + key),
		Body:          body,
		ContentLength: aws.Int64(size),
	})
	if err != nil {
		return fmt.Errorf("lake: writing %s%s: %w", t.url, key, err)
	}
	return nil
}

// Spool starts a file in a temporary file of the machine's temporary
// folder ($TMPDIR), uploaded with one PutObject when it lands, so that a
// lander holds no whole file in memory (lake.Spooler).
func (t *Target) Spool(string) (lake.Spool, error) {
	return lake.FileSpool(os.TempDir(), func(ctx context.Context, key string, f *os.File, size int64) error {
		defer func() {
			f.Close()
			os.Remove(f.Name())
		}()
		return t.put(ctx, key, io.NewSectionReader(f, 0, size), size)
	})
}

// Get reads an object.
func (t *Target) Get(ctx context.Context, key string) ([]byte, error) {
	out, err := t.client.GetObject(ctx, &awss3.GetObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.prefix + key)})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, fmt.Errorf("%s: %w", key, lake.ErrNotFound)
		}
		return nil, fmt.Errorf("lake: reading %s%s: %w", t.url, key, err)
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}

// List lists the objects below a prefix, in key order.
func (t *Target) List(ctx context.Context, prefix string) ([]lake.Object, error) {
	var out []lake.Object
	p := awss3.NewListObjectsV2Paginator(t.client, &awss3.ListObjectsV2Input{
		Bucket: aws.String(t.bucket), Prefix: aws.String(t.prefix + prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("lake: listing %s%s: %w", t.url, prefix, err)
		}
		for _, o := range page.Contents {
			out = append(out, lake.Object{Key: strings.TrimPrefix(aws.ToString(o.Key), t.prefix), Size: aws.ToInt64(o.Size)})
		}
	}
	return out, nil
}

// Delete removes an object.
func (t *Target) Delete(ctx context.Context, key string) error {
	_, err := t.client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(t.prefix + key)})
	if err != nil {
		return fmt.Errorf("lake: deleting %s%s: %w", t.url, key, err)
	}
	return nil
}
