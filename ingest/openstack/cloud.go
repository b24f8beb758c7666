package openstack

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	gcos "github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/tokens"
)

// Microversions cairn sends. Nova 2.79 returns the embedded flavor with
// extra specs (2.47), server tags (2.26) and delete_on_termination of
// volume attachments; createImage returns the image id (2.45). Cinder 3.44
// has the attachments API (3.27) with os-complete.
const (
	NovaMicroversion   = "2.79"
	CinderMicroversion = "3.44"
)

// Cloud is an authenticated session with one client per service. Service
// clients are nil for services the catalog lacks (Check reports them).
type Cloud struct {
	Provider *gophercloud.ProviderClient
	Identity *gophercloud.ServiceClient
	Compute  *gophercloud.ServiceClient // nova, at NovaMicroversion
	Volume   *gophercloud.ServiceClient // cinder v3, at CinderMicroversion
	Image    *gophercloud.ServiceClient // glance v2
	Network  *gophercloud.ServiceClient // neutron v2

	Token   *tokens.Token
	User    tokens.User
	Project *tokens.Project // nil with system or domain scope
	System  bool
	Roles   []string
	Catalog []tokens.CatalogEntry
	Region  string
	Source  string // where the settings came from
	// ServiceErrors says why a service client is nil.
	ServiceErrors map[string]string
}

// Connect authenticates and builds the service clients. Its errors say
// what is wrong (URL, port, TLS, credentials, scope) and what to do.
func Connect(ctx context.Context, c Config) (*Cloud, error) {
	r, err := c.resolve()
	if err != nil {
		return nil, err
	}
	if err := checkAuthURL(r.auth.IdentityEndpoint); err != nil {
		return nil, err
	}
	pc, err := gcos.NewClient(r.auth.IdentityEndpoint)
	if err != nil {
		return nil, fmt.Errorf("auth URL %q: %w", r.auth.IdentityEndpoint, err)
	}
	pc.HTTPClient = http.Client{Transport: transport(c.Transport, r.tls)}
	pc.UserAgent.Prepend("cairn")
	pc.RetryFunc = retryIdempotent
	if err := gcos.Authenticate(ctx, pc, r.auth); err != nil {
		return nil, authError(r, err)
	}
	cl := &Cloud{Provider: pc, Region: r.endpoint.Region, Source: r.source}
	if err := cl.readToken(); err != nil {
		return nil, err
	}
	if cl.Project == nil && !cl.System {
		return nil, fmt.Errorf("the credentials from %s authenticated, but the token has no project or system scope, so no service is usable: set OS_PROJECT_NAME (and OS_PROJECT_DOMAIN_NAME if not Default) or project_name in clouds.yaml, or OS_SYSTEM_SCOPE=all for an admin", r.source)
	}
	eo := r.endpoint
	cl.ServiceErrors = map[string]string{}
	svc := func(typ string) func(*gophercloud.ServiceClient, error) *gophercloud.ServiceClient {
		return func(sc *gophercloud.ServiceClient, err error) *gophercloud.ServiceClient {
			if err != nil {
				cl.ServiceErrors[typ] = err.Error()
				return nil
			}
			return sc
		}
	}
	cl.Identity = svc("identity")(gcos.NewIdentityV3(pc, eo))
	cl.Compute = svc("compute")(gcos.NewComputeV2(pc, eo))
	cl.Volume = svc("volumev3")(gcos.NewBlockStorageV3(pc, eo))
	cl.Image = svc("image")(gcos.NewImageV2(pc, eo))
	cl.Network = svc("network")(gcos.NewNetworkV2(pc, eo))
	if cl.Compute != nil {
		cl.Compute.Microversion = NovaMicroversion
	}
	if cl.Volume != nil {
		cl.Volume.Microversion = CinderMicroversion
	}
	return cl, nil
}

func (cl *Cloud) readToken() error {
	res, ok := cl.Provider.GetAuthResult().(tokens.CreateResult)
	if !ok {
		return fmt.Errorf("keystone returned no token details")
	}
	var err error
	if cl.Token, err = res.ExtractToken(); err != nil {
		return fmt.Errorf("keystone token: %w", err)
	}
	if u, err := res.ExtractUser(); err == nil && u != nil {
		cl.User = *u
	}
	if p, err := res.ExtractProject(); err == nil && p != nil && p.ID != "" {
		cl.Project = p
	}
	var sys struct {
		Token struct {
			System map[string]any `json:"system"`
		} `json:"token"`
	}
	if res.ExtractInto(&sys) == nil && sys.Token.System != nil {
		cl.System = true
	}
	roles, _ := res.ExtractRoles()
	for _, r := range roles {
		cl.Roles = append(cl.Roles, r.Name)
	}
	if cat, err := res.ExtractServiceCatalog(); err == nil && cat != nil {
		cl.Catalog = cat.Entries
	}
	return nil
}

// IsAdmin reports whether the token carries the admin role (needed for
// --all-projects and for force-deleting temporaries of other projects).
func (cl *Cloud) IsAdmin() bool {
	for _, r := range cl.Roles {
		if r == "admin" {
			return true
		}
	}
	return false
}

// ProjectID is the scoped project's id, or "" with system scope.
func (cl *Cloud) ProjectID() string {
	if cl.Project == nil {
		return ""
	}
	return cl.Project.ID
}

func transport(rt http.RoundTripper, tc *tls.Config) http.RoundTripper {
	if rt != nil {
		return rt
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = tc
	t.ResponseHeaderTimeout = 5 * time.Minute
	t.DialContext = (&net.Dialer{Timeout: 15 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return t
}

// retryIdempotent retries reads and deletes a few times after a dropped
// connection or a 502/503/504; creations are never retried blindly (a
// lost response may hide a created resource, which the cleanup finds by
// its unique name instead).
func retryIdempotent(ctx context.Context, method, u string, _ *gophercloud.RequestOpts, err error, n uint) error {
	if n >= 4 || (method != http.MethodGet && method != http.MethodHead && method != http.MethodDelete) {
		return err
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		if code.Actual != 502 && code.Actual != 503 && code.Actual != 504 {
			return err
		}
	} else if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	select {
	case <-ctx.Done():
		return err
	case <-time.After(time.Duration(n+1) * time.Second):
	}
	return nil
}

func checkAuthURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("auth URL %q is not an http(s) URL: set OS_AUTH_URL or auth_url like https://keystone.example.com:5000/v3 or https://host:443/identity/v3", s)
	}
	return nil
}

// authError turns a failed authentication into advice.
func authError(r *resolved, err error) error {
	u := r.auth.IdentityEndpoint
	var code gophercloud.ErrUnexpectedResponseCode
	var uaErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var opErr *net.OpError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &uaErr) || errors.As(err, &hostErr) || strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:"):
		return fmt.Errorf("TLS to Keystone at %s failed: %w; pass the cloud's CA with --os-cacert FILE (OS_CACERT, cacert in clouds.yaml), or --insecure to skip verification knowingly", u, err)
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve the Keystone host in %s: %w; check OS_AUTH_URL / auth_url", u, err)
	case errors.As(err, &opErr):
		return fmt.Errorf("cannot connect to Keystone at %s: %w; check the host and port in OS_AUTH_URL / auth_url (Keystone usually listens on 5000, or 443 behind a proxy with a path such as /identity/v3)", u, err)
	case errors.As(err, &code) && code.Actual == http.StatusUnauthorized:
		return fmt.Errorf("keystone at %s refused the credentials from %s (401): check the user name or application credential, the password or secret, and the user domain (default \"Default\")", u, r.source)
	case errors.As(err, &code) && (code.Actual == http.StatusNotFound || code.Actual == http.StatusMethodNotAllowed):
		return fmt.Errorf("no Keystone v3 API at %s (HTTP %d): the path is probably wrong; the auth URL must end in the identity API, e.g. http://host:5000/v3 or https://host:443/identity/v3", u, code.Actual)
	case errors.As(err, &code) && code.Actual == http.StatusBadRequest && strings.Contains(string(code.Body), "scope"):
		return fmt.Errorf("keystone at %s rejected the requested scope: %s; check the project name/ID and its domain (OS_PROJECT_DOMAIN_NAME, default \"Default\")", u, strings.TrimSpace(string(code.Body)))
	case errors.As(err, &code):
		return fmt.Errorf("keystone at %s answered HTTP %d: %s", u, code.Actual, strings.TrimSpace(string(code.Body)))
	}
	if strings.Contains(err.Error(), "Unable to find") || strings.Contains(err.Error(), "version") {
		return fmt.Errorf("no usable Keystone API at %s: %w; the auth URL must point at Keystone (e.g. http://host:5000/v3)", u, err)
	}
	return fmt.Errorf("authenticate at %s: %w", u, err)
}
