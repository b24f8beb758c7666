package libvirt

import (
	"strings"
	"testing"

	"libvirt.org/go/libvirtxml"
)

// TestAgentChannel: the guest agent channel and its state come from the
// live domain XML; other channels and a domain without one do not count.
func TestAgentChannel(t *testing.T) {
	for _, c := range []struct {
		devices string
		state   string
		ok      bool
	}{
		{devices: `<channel type='unix'><source mode='bind' path='/var/lib/libvirt/qemu/channel/target/domain-1-g/org.qemu.guest_agent.0'/>
			<target type='virtio' name='org.qemu.guest_agent.0' state='connected'/></channel>`, state: "connected", ok: true},
		{devices: `<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0' state='disconnected'/></channel>`, state: "disconnected", ok: true},
		{devices: `<channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>`, ok: true},
		{devices: `<channel type='spicevmc'><target type='virtio' name='com.redhat.spice.0'/></channel>`},
		{devices: ``},
	} {
		var d libvirtxml.Domain
		if err := d.Unmarshal(`<domain type='qemu'><name>g</name><devices>` + c.devices + `</devices></domain>`); err != nil {
			t.Fatal(err)
		}
		j := &job{xml: &d, res: &Result{}}
		state, ok := j.agent()
		if state != c.state || ok != c.ok {
			t.Errorf("%s: agent() = %q, %v; want %q, %v", strings.TrimSpace(c.devices), state, ok, c.state, c.ok)
		}
	}
	if _, ok := (&job{res: &Result{}}).agent(); ok {
		t.Error("a job without domain XML has an agent")
	}
}

// TestNoteOnce: the note made when the point in time is taken again (a
// broken checkpoint chain) is not repeated.
func TestNoteOnce(t *testing.T) {
	var warned []string
	j := &job{name: "g", res: &Result{}, o: Options{Warn: func(m string) { warned = append(warned, m) }}}
	j.noteOnce("agent %s", "x")
	j.noteOnce("agent %s", "x")
	j.noteOnce("agent %s", "y")
	if len(j.res.Notes) != 2 || len(warned) != 2 {
		t.Fatalf("notes %q, warnings %q", j.res.Notes, warned)
	}
}
