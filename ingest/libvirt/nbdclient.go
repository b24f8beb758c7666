package libvirt

import "fmt"

// dialExport opens one NBD export on a unix socket of the hypervisor.
func dialExport(h host, sock, name string, contexts []string) (export, error) {
	return nil, fmt.Errorf("NBD client not wired yet")
}
