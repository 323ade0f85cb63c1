// Command flakyserver serves the flaky payment API of package flakyserver
// for trying scripts/flaky_api.star by hand.
package main

import (
	"flag"
	"log"
	"net/http"
	"time"

	"github.com/starflow/starflow/scripts/flakyserver"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	token := flag.String("token", "", "bearer token POST /charges requires (empty: none)")
	retryAfter := flag.Duration("retry-after", time.Second, "wait a 429 asks for")
	flag.Parse()
	log.Printf("flaky API on http://%s (GET /status, POST /charges, GET /charges)", *addr)
	log.Fatal(http.ListenAndServe(*addr, flakyserver.New(flakyserver.Options{Token: *token, RetryAfter: *retryAfter})))
}
