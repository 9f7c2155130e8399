package main

import (
	"net/http"
	"time"
)

func transport() http.RoundTripper {
	return &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute, DisableCompression: true}
}
