package nbd

import (
	"context"
	"fmt"
	"net"
	"sort"
)

// Query asks the server about export without entering transmission
// (NBD_OPT_INFO), and lists the metadata contexts it offers for it that
// match the queries (NBD_OPT_LIST_META_CONTEXT; all of them if none are
// given, e.g. "qemu:dirty-bitmap:" for every exported bitmap). It ends
// the session with NBD_OPT_ABORT.
func Query(ctx context.Context, network, addr, export string, queries []string, opts *Options) (ExportInfo, []string, error) {
	o := withDefaults(opts)
	var info ExportInfo
	var contexts []string
	err := negotiate(ctx, network, addr, o, func(conn net.Conn, n *negotiation) (err error) {
		if info, contexts, err = query(n, export, queries); err == nil {
			n.abort()
			conn.Close()
		}
		return err
	})
	if err != nil {
		return ExportInfo{}, nil, fmt.Errorf("nbd: %s %s export %q: %w", network, addr, export, err)
	}
	return info, contexts, nil
}

func query(n *negotiation, export string, queries []string) (ExportInfo, []string, error) {
	structured, err := n.structuredReplies()
	if err != nil {
		return ExportInfo{}, nil, err
	}
	var names []string
	if structured {
		offered, err := n.metaContexts(optListMetaContext, export, queries)
		if err != nil {
			return ExportInfo{}, nil, err
		}
		for _, m := range offered {
			names = append(names, m.name)
		}
		sort.Strings(names)
	}
	info, err := n.info(optInfo, export)
	return info, names, err
}
