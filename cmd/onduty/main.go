// Command onduty runs the onduty service and its tools.
//
//	onduty serve [--config FILE]            run everything
//	onduty check-config FILE                validate a configuration
//	onduty status [--config FILE | --url URL [--admin-token T]] [--json] PROPERTY
//	                                        the widget status and why
//	onduty loadtest [flags]                 measure a deployment (docs/PERFORMANCE.md)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage:
  onduty serve [--config FILE]                     run the service (no config: a demo on :8080)
  onduty check-config FILE                         validate a configuration and list every problem
  onduty status [--config FILE] [--json] PROPERTY  print a property's widget status and why, from the Redis of FILE
  onduty status --url URL [--admin-token T] [--json] PROPERTY
                                                   the same, asked of a running server's admin API
                                                   (token default $ONDUTY_ADMIN_TOKEN; flags may follow PROPERTY)
  onduty loadtest [--target URL --property P] [--quick] [--json FILE]
                                                   measure throughput, latency and capacity (see docs/PERFORMANCE.md)
The configuration file may also be given as ONDUTY_CONFIG.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage asks run to print the usage.
var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr)
	case "check-config":
		err = checkConfig(args[1:], stdout)
	case "status":
		err = status(ctx, args[1:], stdout, stderr)
	case "loadtest":
		err = runLoadtest(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "onduty: unknown command %q\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprint(stderr, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "onduty %s: %v\n", args[0], err)
		return 1
	}
}
