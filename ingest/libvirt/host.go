package libvirt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
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

// forward makes a unix socket of the hypervisor reachable as a local
// path: itself on this machine; over SSH, a local socket whose
// connections are forwarded on the SSH connection.
func forward(h host, remote string) (local string, stop func(), err error) {
	if _, ok := h.(localHost); ok {
		return remote, func() {}, nil
	}
	dir, err := os.MkdirTemp("", "cairn-fwd-")
	if err != nil {
		return "", nil, err
	}
	local = filepath.Join(dir, "nbd.sock")
	ln, err := net.Listen("unix", local)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r, err := h.Dial(remote)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				done := make(chan struct{}, 2)
				go func() { io.Copy(r, c); done <- struct{}{} }()
				go func() { io.Copy(c, r); done <- struct{}{} }()
				<-done
				c.Close()
				r.Close()
				<-done
			}()
		}
	}()
	return local, func() { ln.Close(); wg.Wait(); os.RemoveAll(dir) }, nil
}
