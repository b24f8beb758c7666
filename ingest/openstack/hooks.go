package openstack

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// runHook runs a --pre or --post command with sh -c. The command learns
// the server from CAIRN_SERVER_ID, CAIRN_SERVER_NAME, CAIRN_PROJECT_ID and
// CAIRN_PHASE ("pre" or "post").
func runHook(ctx context.Context, phase, command string, s *Server, timeout time.Duration) error {
	if command == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Env = append(os.Environ(), "CAIRN_SERVER_ID="+s.ID, "CAIRN_SERVER_NAME="+s.Name,
		"CAIRN_PROJECT_ID="+s.ProjectID, "CAIRN_PHASE="+phase)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 500 {
			msg = msg[len(msg)-500:]
		}
		return fmt.Errorf("%s command failed: %w: %s", phase, err, msg)
	}
	return nil
}
