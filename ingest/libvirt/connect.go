package libvirt

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	golibvirt "github.com/digitalocean/go-libvirt"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Conn is a connection to one hypervisor: libvirt's RPC, plus the host
// itself for what libvirt does not carry (the NBD sockets of backup jobs,
// qemu-nbd and qemu-img for shut-off domains, overlay files). For
// qemu+ssh the host is the remote machine, reached over the same SSH
// connection: libvirt's socket and the NBD sockets are forwarded unix
// sockets (direct-streamlocal), commands are SSH sessions.
type Conn struct {
	L    *golibvirt.Libvirt
	URI  string
	host host
}

// host is the machine libvirtd runs on.
type host interface {
	// Dial connects to a unix socket on the host.
	Dial(path string) (net.Conn, error)
	// Run runs a command on the host and returns its stdout.
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
	// Start starts a long-running command; stop ends it and waits.
	Start(name string, args ...string) (stop func(), err error)
	Close() error
}

const defaultLibvirtSocket = "/var/run/libvirt/libvirt-sock"

// Target is a parsed connection URI.
type Target struct {
	Remote     bool
	User       string
	Addr       string // host:port of the SSH server
	Socket     string // libvirtd's socket on the host
	KeyFile    string // SSH private key; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent
	KnownHosts string // default ~/.ssh/known_hosts
	NoVerify   bool   // no_verify=1: accept any host key
	Name       string // the URI libvirtd itself opens, e.g. qemu:///system
}

// ParseURI understands qemu:///system (and qemu:///session) on this
// machine and qemu+ssh://[user@]host[:port]/system on a remote one, with
// the query parameters socket=, keyfile=, known_hosts=, no_verify=1.
func ParseURI(uri string) (Target, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return Target{}, fmt.Errorf("connection URI %q: %w", uri, err)
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" {
		return Target{}, fmt.Errorf("connection URI %q: only the qemu driver is supported (qemu:///system, qemu+ssh://user@host/system)", uri)
	}
	if u.Path != "/system" && u.Path != "/session" {
		return Target{}, fmt.Errorf("connection URI %q: path must be /system or /session", uri)
	}
	q := u.Query()
	t := Target{Socket: q.Get("socket"), Name: "qemu://" + u.Path}
	switch transport {
	case "", "unix":
		if u.Host != "" {
			return Target{}, fmt.Errorf("connection URI %q: a remote host needs a transport, e.g. qemu+ssh://%s%s", uri, u.Host, u.Path)
		}
		if t.Socket == "" {
			t.Socket = defaultLibvirtSocket
		}
		return t, nil
	case "ssh":
	default:
		return Target{}, fmt.Errorf("connection URI %q: transport %q is not supported; use qemu:///system or qemu+ssh://", uri, transport)
	}
	if u.Hostname() == "" {
		return Target{}, fmt.Errorf("connection URI %q: qemu+ssh needs a host", uri)
	}
	t.Remote = true
	t.User = u.User.Username()
	if _, has := u.User.Password(); has {
		return Target{}, fmt.Errorf("connection URI %q: passwords are not accepted; use an SSH key", uri)
	}
	if t.User == "" {
		if cur, err := user.Current(); err == nil {
			t.User = cur.Username
		}
	}
	port := u.Port()
	if port == "" {
		port = "22"
	}
	t.Addr = net.JoinHostPort(u.Hostname(), port)
	t.KeyFile, t.KnownHosts = q.Get("keyfile"), q.Get("known_hosts")
	t.NoVerify = q.Get("no_verify") == "1"
	if t.Socket == "" {
		t.Socket = defaultLibvirtSocket
	}
	return t, nil
}

// Connect opens uri (see ParseURI).
func Connect(uri string) (*Conn, error) {
	t, err := ParseURI(uri)
	if err != nil {
		return nil, err
	}
	var h host = localHost{}
	if t.Remote {
		if h, err = dialSSH(t); err != nil {
			return nil, err
		}
	}
	l := golibvirt.NewWithDialer(socketDialer{h: h, path: t.Socket})
	if err := l.ConnectToURI(golibvirt.ConnectURI(t.Name)); err != nil {
		h.Close()
		return nil, fmt.Errorf("connect to libvirt at %s: %w (is libvirtd running, and may this user use its socket %s?)", uri, err, t.Socket)
	}
	return &Conn{L: l, URI: uri, host: h}, nil
}

// Close disconnects.
func (c *Conn) Close() error {
	err := c.L.Disconnect()
	c.host.Close()
	return err
}

type socketDialer struct {
	h    host
	path string
}

func (d socketDialer) Dial() (net.Conn, error) { return d.h.Dial(d.path) }

// dialSSH connects to the remote host with key authentication only.
func dialSSH(t Target) (*sshHost, error) {
	home, _ := os.UserHomeDir()
	var auth []ssh.AuthMethod
	var signers []ssh.Signer
	keys := []string{t.KeyFile}
	if t.KeyFile == "" {
		keys = []string{filepath.Join(home, ".ssh/id_ed25519"), filepath.Join(home, ".ssh/id_ecdsa"), filepath.Join(home, ".ssh/id_rsa")}
	}
	for _, k := range keys {
		pem, err := os.ReadFile(k)
		if err != nil {
			if t.KeyFile != "" {
				return nil, fmt.Errorf("ssh key %s: %w", k, err)
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(pem)
		if err != nil {
			return nil, fmt.Errorf("ssh key %s: %w (keys with a passphrase must be loaded into ssh-agent)", k, err)
		}
		signers = append(signers, s)
	}
	if len(signers) > 0 {
		auth = append(auth, ssh.PublicKeys(signers...))
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" {
		if c, err := net.Dial("unix", sock); err == nil {
			auth = append(auth, ssh.PublicKeysCallback(agent.NewClient(c).Signers))
		}
	}
	if len(auth) == 0 {
		return nil, fmt.Errorf("no SSH key for %s: put one in ~/.ssh, pass ?keyfile=PATH in the URI, or run ssh-agent", t.Addr)
	}
	hostKey := ssh.InsecureIgnoreHostKey()
	if !t.NoVerify {
		kh := t.KnownHosts
		if kh == "" {
			kh = filepath.Join(home, ".ssh/known_hosts")
		}
		cb, err := knownhosts.New(kh)
		if err != nil {
			return nil, fmt.Errorf("known hosts %s: %w (connect once with ssh to record the host key, or add ?no_verify=1)", kh, err)
		}
		hostKey = cb
	}
	cfg := &ssh.ClientConfig{User: t.User, Auth: auth, HostKeyCallback: hostKey, Timeout: 20 * time.Second}
	c, err := ssh.Dial("tcp", t.Addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("ssh %s@%s: %w", t.User, t.Addr, err)
	}
	return &sshHost{c: c}, nil
}
