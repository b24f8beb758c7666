package openstack

import "strings"

// QuiesceInfo is what the image behind the root disk says about freezing
// the guest's file systems during a snapshot.
type QuiesceInfo struct {
	GuestAgent   bool   `json:"hw_qemu_guest_agent"`
	Requested    bool   `json:"quiesce_requested"` // os_require_quiesce or legacy hw_require_fsfreeze
	CouldQuiesce bool   `json:"could_quiesce"`     // a guest agent is declared
	Advice       string `json:"advice,omitempty"`
}

func yes(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "1", "on", "y":
		return true
	}
	return false
}

func quiesceInfo(props map[string]string) QuiesceInfo {
	q := QuiesceInfo{GuestAgent: yes(props["hw_qemu_guest_agent"])}
	req := yes(props["os_require_quiesce"]) || yes(props["hw_require_fsfreeze"])
	q.CouldQuiesce = q.GuestAgent
	q.Requested = q.GuestAgent && req
	switch {
	case q.Requested:
	case q.GuestAgent:
		q.Advice = "the image declares a QEMU guest agent but not os_require_quiesce=yes, so cairn takes crash-consistent snapshots; set os_require_quiesce=yes on the image (or the boot volume's image metadata) for file-system consistency"
	case req:
		q.Advice = "the image asks for quiescing but does not declare hw_qemu_guest_agent=yes, so Nova cannot freeze the guest; snapshots are crash-consistent"
	}
	return q
}
