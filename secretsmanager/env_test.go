package secretsmanager_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/plinth-data/plinth/secretsmanager"
)

// motoServer runs moto's AWS emulator (scripts/tools installs it) on a
// free loopback port.
func motoServer(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("moto_server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("moto_server not found: run scripts/tools")
		}
		t.Skip("moto_server not found: run scripts/tools")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "-H", "127.0.0.1", "-p", fmt.Sprint(port))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if res, err := http.Get(url + "/moto-api/"); err == nil {
			res.Body.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatal("moto_server did not start")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestApplyEnv(t *testing.T) {
	endpoint := motoServer(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "eu-west-2")
	ctx := context.Background()
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	client := sm.NewFromConfig(cfg, func(o *sm.Options) { o.BaseEndpoint = aws.String(endpoint) })
	put := func(name, value string) string {
		out, err := client.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ARN)
	}
	arn := put("plinth/production/residents", `{"PLINTH_STORE":"postgres://plinth:s3cret@db.internal:5432/residents","PLINTH_AUTH_SECRET":"from-the-secret","PLINTH_LOG_LEVEL":"debug"}`)

	t.Setenv(secretsmanager.ARNEnv, arn)
	t.Setenv(secretsmanager.EndpointEnv, endpoint)
	t.Setenv("PLINTH_LOG_LEVEL", "warn") // set by the deployment: wins
	os.Unsetenv("PLINTH_STORE")
	os.Unsetenv("PLINTH_AUTH_SECRET")
	t.Cleanup(func() { os.Unsetenv("PLINTH_STORE"); os.Unsetenv("PLINTH_AUTH_SECRET") })
	if err := secretsmanager.ApplyEnv(ctx); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("PLINTH_STORE") != "postgres://plinth:s3cret@db.internal:5432/residents" ||
		os.Getenv("PLINTH_AUTH_SECRET") != "from-the-secret" || os.Getenv("PLINTH_LOG_LEVEL") != "warn" {
		t.Fatalf("environment: %q %q %q", os.Getenv("PLINTH_STORE"), os.Getenv("PLINTH_AUTH_SECRET"), os.Getenv("PLINTH_LOG_LEVEL"))
	}

	for name, value := range map[string]string{
		"plinth/not-json": "postgres://x", "plinth/foreign-key": `{"AWS_SECRET_ACCESS_KEY":"x"}`,
	} {
		if _, err := secretsmanager.Load(ctx, put(name, value), endpoint); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := secretsmanager.Load(ctx, "plinth/none", endpoint); err == nil || !strings.Contains(err.Error(), "GetSecretValue") {
		t.Errorf("missing secret: %v", err)
	}
}
