package openstack

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/config/clouds"
)

// Config says how to reach and authenticate to a cloud. Fields left empty
// come from clouds.yaml when Cloud is set; OS_* variables are read by the
// CLI into the same fields.
type Config struct {
	Cloud string // entry in clouds.yaml (searched in OS_CLIENT_CONFIG_FILE, ., ~/.config/openstack, /etc/openstack)

	AuthURL           string
	Username, UserID  string
	Password          string
	UserDomainName    string
	UserDomainID      string
	ProjectName       string
	ProjectID         string
	ProjectDomainName string
	ProjectDomainID   string
	SystemScope       string // "all" for system scope

	AppCredentialID     string
	AppCredentialName   string
	AppCredentialSecret string

	Region    string
	Interface string // public (default), internal, admin
	CACert    string // PEM file with the CA certificates to trust
	Insecure  bool   // skip TLS verification (explicit opt-in only)

	// Transport, when set, carries every request (tests, fault injection).
	Transport http.RoundTripper
}

// resolved is a Config turned into what gophercloud needs.
type resolved struct {
	auth     gophercloud.AuthOptions
	endpoint gophercloud.EndpointOpts
	tls      *tls.Config
	source   string // where the settings came from, for messages
}

func (c Config) resolve() (*resolved, error) {
	if c.Cloud != "" {
		return c.fromCloudsYAML()
	}
	if c.AuthURL == "" {
		return nil, fmt.Errorf("no cloud configured: pass --os-cloud NAME (a clouds.yaml entry) or set OS_CLOUD, or set OS_AUTH_URL with OS_USERNAME/OS_PASSWORD (or OS_APPLICATION_CREDENTIAL_ID/_SECRET) and OS_PROJECT_NAME")
	}
	r := &resolved{source: "OS_* variables / flags"}
	r.auth = gophercloud.AuthOptions{
		IdentityEndpoint:            c.AuthURL,
		Username:                    c.Username,
		UserID:                      c.UserID,
		Password:                    c.Password,
		ApplicationCredentialID:     c.AppCredentialID,
		ApplicationCredentialName:   c.AppCredentialName,
		ApplicationCredentialSecret: c.AppCredentialSecret,
		AllowReauth:                 true,
	}
	if c.UserID == "" && c.AppCredentialID == "" {
		r.auth.DomainID, r.auth.DomainName = c.UserDomainID, c.UserDomainName
		if r.auth.DomainID == "" && r.auth.DomainName == "" {
			r.auth.DomainName = "Default"
		}
	}
	if c.AppCredentialID == "" && c.AppCredentialName == "" {
		scope, err := c.scope()
		if err != nil {
			return nil, err
		}
		r.auth.Scope = scope
	}
	r.endpoint = gophercloud.EndpointOpts{Region: c.Region, Availability: availability(c.Interface)}
	var err error
	r.tls, err = tlsConfig(c.CACert, c.Insecure)
	return r, err
}

func (c Config) scope() (*gophercloud.AuthScope, error) {
	switch {
	case c.SystemScope != "":
		if c.SystemScope != "all" {
			return nil, fmt.Errorf("system scope %q: only \"all\" exists", c.SystemScope)
		}
		return &gophercloud.AuthScope{System: true}, nil
	case c.ProjectID != "":
		return &gophercloud.AuthScope{ProjectID: c.ProjectID}, nil
	case c.ProjectName != "":
		s := &gophercloud.AuthScope{ProjectName: c.ProjectName, DomainID: c.ProjectDomainID, DomainName: c.ProjectDomainName}
		if s.DomainID == "" && s.DomainName == "" {
			s.DomainName = "Default"
		}
		return s, nil
	}
	return nil, nil // unscoped: Connect reports what to set
}

func (c Config) fromCloudsYAML() (*resolved, error) {
	opts := []clouds.ParseOption{clouds.WithCloudName(c.Cloud)}
	set := func(v string, f func(string) clouds.ParseOption) {
		if v != "" {
			opts = append(opts, f(v))
		}
	}
	set(c.AuthURL, clouds.WithIdentityEndpoint)
	set(c.Username, clouds.WithUsername)
	set(c.Password, clouds.WithPassword)
	set(c.ProjectName, clouds.WithProjectName)
	set(c.ProjectID, clouds.WithProjectID)
	set(c.Region, clouds.WithRegion)
	set(c.Interface, clouds.WithEndpointType)
	set(c.CACert, clouds.WithCACertPath)
	set(c.AppCredentialID, clouds.WithApplicationCredentialID)
	set(c.AppCredentialSecret, clouds.WithApplicationCredentialSecret)
	if c.Insecure {
		opts = append(opts, clouds.WithInsecure(true))
	}
	ao, eo, tc, err := clouds.Parse(opts...)
	if err != nil {
		return nil, fmt.Errorf("cloud %q: %w (clouds.yaml is searched in $OS_CLIENT_CONFIG_FILE, ./, ~/.config/openstack/, /etc/openstack/)", c.Cloud, err)
	}
	ao.AllowReauth = true
	if ao.ApplicationCredentialID == "" && ao.ApplicationCredentialName == "" {
		if ao.UserID == "" && ao.DomainID == "" && ao.DomainName == "" {
			ao.DomainName = "Default"
		}
		if s := ao.Scope; s != nil && s.ProjectName != "" && s.DomainID == "" && s.DomainName == "" {
			s.DomainName = "Default"
		}
		if ao.Scope == nil && ao.TenantName != "" {
			ao.Scope = &gophercloud.AuthScope{ProjectName: ao.TenantName, DomainName: "Default"}
		}
	} else {
		ao.Scope = nil // an application credential carries its own scope
	}
	if eo.Availability == "" {
		eo.Availability = gophercloud.AvailabilityPublic
	}
	if tc == nil {
		tc, err = tlsConfig("", false)
	}
	return &resolved{auth: ao, endpoint: eo, tls: tc, source: "clouds.yaml cloud " + c.Cloud}, err
}

func availability(iface string) gophercloud.Availability {
	switch strings.TrimSuffix(strings.ToLower(iface), "url") {
	case "internal":
		return gophercloud.AvailabilityInternal
	case "admin":
		return gophercloud.AvailabilityAdmin
	}
	return gophercloud.AvailabilityPublic
}

func tlsConfig(caFile string, insecure bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if caFile == "" {
		return tc, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	tc.RootCAs = pool
	return tc, nil
}
