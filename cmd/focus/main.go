// Command focus runs the focus SFU.
//
//	focus serve [flags]   run the SFU (see focus serve --help)
//	focus version         print the version
//
// Exit codes: 0 after a clean shutdown, 1 when the focus fails while running
// (for example a port already in use), 2 for a bad command line or config.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		// Restore the default handling, so a second signal kills at once.
		stop()
	}()
	os.Exit(run(ctx, os.Args, os.Stdout, os.Stderr))
}
