package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	awslambda "github.com/aws/aws-lambda-go/lambda"
	"github.com/spf13/cobra"

	"github.com/plinth-data/plinth/lambda"
)

// lambdaHandlers are the functions the binary serves on AWS Lambda,
// chosen by the function's handler setting (_HANDLER on provided.al2023)
// or by `plinth lambda <name>`.
var lambdaHandlers = map[string]func(context.Context, Config) error{
	"api":        lambdaAPI,
	"background": lambdaBackground,
}

// lambdaMargin is the time a background invocation leaves itself before
// the function's timeout, to release its leases and answer.
const lambdaMargin = 10 * time.Second

func lambdaCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lambda api|background",
		Short: "Run as an AWS Lambda function (the binary named bootstrap does this by itself)",
		Long: `Serve AWS Lambda invocations through the Lambda Runtime API
(AWS_LAMBDA_RUNTIME_API), configured like serve (plinth.yaml in the package,
PLINTH_* variables):

  api         the Platform API behind API Gateway: REST API proxy events
              (payload 1.0), HTTP API and function URL events (payload 2.0),
              through the same handler, write path, audit and events as serve
  background  what serve runs in the background, for an EventBridge schedule
              (every minute): the outbox relay, the audit chainer, the
              tombstone purge, the support sweep (PostgreSQL), contract
              expiry and, with lakeServe, lake landing; each invocation works
              until 10 s before the function's timeout, then answers with
              what it did

Built as bootstrap for provided.al2023 (make lambda), the binary runs the
function named by its handler setting ("api" or "background") with no
arguments.`,
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"api", "background"},
		RunE: func(cmd *cobra.Command, args []string) error {
			run, ok := lambdaHandlers[args[0]]
			if !ok {
				return fmt.Errorf("no Lambda function %q: set the function's handler to api or background", args[0])
			}
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return run(cmd.Context(), cfg)
		},
	}
	// On Lambda the settings come from the environment (and plinth.yaml in
	// the package); the flags are for running it by hand.
	addConfigFlags(cmd, with(storeFlags, "env", "log-level", "nats-url", "event-bus", "otel-endpoint")...)
	return cmd
}

// lambdaBootstrap reports the arguments that run the binary as the Lambda
// function its handler names, when it was started by AWS Lambda with none.
// A handler it does not know fails with the names it knows.
func lambdaBootstrap(args []string) ([]string, bool) {
	if len(args) > 1 || os.Getenv("AWS_LAMBDA_RUNTIME_API") == "" {
		return nil, false
	}
	return []string{"lambda", os.Getenv("_HANDLER")}, true
}

// lambdaAPI serves API Gateway events with serve's handler. Nothing runs
// between invocations (Lambda freezes the process): the background
// function relays the events and chains the audit records.
func lambdaAPI(ctx context.Context, cfg Config) error {
	return startLambda(ctx, cfg, func(a *app) any { return lambda.NewAPI(a.handler) })
}

// startLambda wires serve's app and serves the handler made from it until
// Lambda ends the process.
func startLambda(ctx context.Context, cfg Config, handler func(*app) any) error {
	ctx = withEnvironment(ctx, cfg.Environment)
	a, err := openApp(ctx, cfg, cfg.PublicURL, newLogger(cfg.LogLevel))
	if err != nil {
		return err
	}
	defer a.Close()
	awslambda.StartWithOptions(handler(a), awslambda.WithContext(ctx), awslambda.WithEnableSIGTERM(a.Close))
	return nil
}

// backgroundResult is what a background invocation answers.
type backgroundResult struct {
	Ran       string `json:"ran"`
	Published int64  `json:"published"`
	RelayErr  string `json:"relayError,omitempty"`
}

// lambdaBackground runs serve's background work in each invocation until
// shortly before its deadline.
func lambdaBackground(ctx context.Context, cfg Config) error {
	return startLambda(ctx, cfg, func(a *app) any { return a.backgroundInvocation })
}

// backgroundInvocation is one scheduled invocation: serve's background
// work until lambdaMargin before the deadline.
func (a *app) backgroundInvocation(ctx context.Context, _ json.RawMessage) (backgroundResult, error) {
	start, before := time.Now(), a.relay.Status().Published
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = start.Add(time.Minute)
	}
	runCtx, cancel := context.WithDeadline(ctx, deadline.Add(-lambdaMargin))
	defer cancel()
	var wg sync.WaitGroup
	err := a.runBackground(runCtx, &wg)
	if err == nil {
		<-runCtx.Done()
	}
	cancel()
	wg.Wait()
	st := a.relay.Status()
	res := backgroundResult{Ran: time.Since(start).Round(time.Millisecond).String(), Published: st.Published - before}
	if st.LastError != nil {
		res.RelayErr = st.LastError.Error()
	}
	a.logger.Info("background invocation done", "ran", res.Ran, "published", res.Published)
	return res, err
}
