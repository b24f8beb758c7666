package libvirt

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/crypto/ssh"
)

// localHost is this machine.
type localHost struct{}

func (localHost) Dial(path string) (net.Conn, error) { return net.Dial("unix", path) }
func (localHost) Close() error                       { return nil }

func (localHost) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (localHost) Start(name string, args ...string) (func(), error) {
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			<-done
		})
	}, nil
}

// sshHost is a remote hypervisor reached over SSH.
type sshHost struct{ c *ssh.Client }

func (h *sshHost) Dial(path string) (net.Conn, error) { return h.c.Dial("unix", path) }
func (h *sshHost) Close() error                       { return h.c.Close() }

// shellQuote quotes args for the remote shell.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func (h *sshHost) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	s, err := h.c.NewSession()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	var stdout, stderr bytes.Buffer
	s.Stdout, s.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- s.Run(shellQuote(append([]string{name}, args...))) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		s.Signal(ssh.SIGTERM)
		return nil, ctx.Err()
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("%s on the hypervisor: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func (h *sshHost) Start(name string, args ...string) (func(), error) {
	s, err := h.c.NewSession()
	if err != nil {
		return nil, err
	}
	// exec replaces the shell, so closing the session ends the command.
	if err := s.Start("exec " + shellQuote(append([]string{name}, args...))); err != nil {
		s.Close()
		return nil, fmt.Errorf("start %s on the hypervisor: %w", name, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.Signal(ssh.SIGTERM)
			s.Close()
		})
	}, nil
}
