package openstack

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
)

// getJSON GETs path (relative to the service's endpoint) into out.
func getJSON(ctx context.Context, sc *gophercloud.ServiceClient, path string, out any) error {
	_, err := sc.Get(ctx, sc.ServiceURL(strings.Split(path, "/")...), out, &gophercloud.RequestOpts{OkCodes: []int{200}})
	return err
}

// postJSON POSTs body to path and decodes the answer into out (if not nil).
func postJSON(ctx context.Context, sc *gophercloud.ServiceClient, path string, body, out any, ok ...int) error {
	if len(ok) == 0 {
		ok = []int{200, 201, 202}
	}
	opts := &gophercloud.RequestOpts{OkCodes: ok}
	if out == nil {
		opts.KeepResponseBody = false
	}
	_, err := sc.Post(ctx, sc.ServiceURL(strings.Split(path, "/")...), body, out, opts)
	return err
}

// deleteURL DELETEs path; a 404 counts as success (already gone).
func deleteURL(ctx context.Context, sc *gophercloud.ServiceClient, path string) error {
	_, err := sc.Delete(ctx, sc.ServiceURL(strings.Split(path, "/")...), &gophercloud.RequestOpts{OkCodes: []int{200, 202, 204}})
	if isNotFound(err) {
		return nil
	}
	return err
}

func isNotFound(err error) bool {
	return err != nil && gophercloud.ResponseCodeIs(err, http.StatusNotFound)
}

// httpStatus returns the HTTP status of an API error, or 0.
func httpStatus(err error) int {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		return code.Actual
	}
	return 0
}

// apiMessage shortens a gophercloud error to the API's own message.
func apiMessage(err error) string {
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		body := strings.TrimSpace(string(code.Body))
		if len(body) > 400 {
			body = body[:400] + "…"
		}
		return fmt.Sprintf("%s %s: HTTP %d: %s", code.Method, code.URL, code.Actual, body)
	}
	return err.Error()
}

// gophercloudOpts are extra request headers.
type gophercloudOpts map[string]string

func (h gophercloudOpts) opts() *gophercloud.RequestOpts {
	return &gophercloud.RequestOpts{MoreHeaders: h, OkCodes: []int{200, 201, 202, 204}}
}
