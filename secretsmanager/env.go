// Package secretsmanager reads Plinth's secrets from AWS Secrets Manager:
// a secret holding a JSON object of PLINTH_* variables
// ({"PLINTH_STORE": "postgres://…", "PLINTH_AUTH_SECRET": "…"}), so a Lambda
// or a server gets its store password and token keys without them in its
// configuration, its environment or Terraform's state.
package secretsmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// ARNEnv names the variable holding the secret's ARN (or name).
const ARNEnv = "PLINTH_SECRETS_ARN"

// EndpointEnv points the client at a Secrets Manager-compatible endpoint
// (tests, emulators); unset means AWS.
const EndpointEnv = "PLINTH_SECRETS_ENDPOINT"

// Load returns the PLINTH_* variables the secret holds.
func Load(ctx context.Context, arn, endpoint string) (map[string]string, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("secrets %s: AWS configuration: %w", arn, err)
	}
	if region := arnRegion(arn); region != "" {
		cfg.Region = region
	}
	client := sm.NewFromConfig(cfg, func(o *sm.Options) {
		if endpoint != "" {
			o.BaseEndpoint = aws.String(endpoint)
		}
	})
	out, err := client.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return nil, fmt.Errorf("secrets %s: %w (the role needs secretsmanager:GetSecretValue on it)", arn, err)
	}
	var vars map[string]string
	if err := json.Unmarshal([]byte(aws.ToString(out.SecretString)), &vars); err != nil {
		return nil, fmt.Errorf("secrets %s: the secret must be a JSON object of PLINTH_* strings: %v", arn, err)
	}
	for k := range vars {
		if !strings.HasPrefix(k, "PLINTH_") || k == ARNEnv {
			return nil, fmt.Errorf("secrets %s: key %q: only PLINTH_* settings belong in it", arn, k)
		}
	}
	return vars, nil
}

// ApplyEnv loads the secret named by PLINTH_SECRETS_ARN, when set, into the
// process environment, where the configuration reads it. A variable set
// already wins, so a deployment can override one value.
func ApplyEnv(ctx context.Context) error {
	arn := os.Getenv(ARNEnv)
	if arn == "" {
		return nil
	}
	vars, err := Load(ctx, arn, os.Getenv(EndpointEnv))
	if err != nil {
		return err
	}
	for k, v := range vars {
		if _, set := os.LookupEnv(k); !set {
			os.Setenv(k, v)
		}
	}
	return nil
}

// arnRegion is the region of an ARN (arn:aws:secretsmanager:REGION:…), or "".
func arnRegion(arn string) string {
	parts := strings.Split(arn, ":")
	if len(parts) > 4 && parts[0] == "arn" {
		return parts[3]
	}
	return ""
}
