package repo

import "time"

// Forget applies a retention policy to the restore points of vms (all VMs
// when empty) and, unless dryRun, deletes the points it does not keep.
// The space they used is freed by Prune. The caller holds a shared lock.
func (r *Repository) Forget(p RetentionPolicy, vms []string, dryRun bool) ([]RetentionDecision, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	points, err := r.Points()
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool)
	for _, vm := range vms {
		want[vm] = true
	}
	var infos []PointInfo
	for _, pt := range points {
		if len(want) == 0 || want[pt.VM] {
			infos = append(infos, PointInfo{ID: pt.ID, VM: pt.VM, Time: pt.Time, Tags: pt.Tags})
		}
	}
	decisions := ApplyRetention(infos, p, time.Local)
	if dryRun {
		return decisions, nil
	}
	for _, d := range decisions {
		if !d.Keep {
			if err := r.DeletePoint(d.Point.ID); err != nil {
				return decisions, err
			}
		}
	}
	return decisions, nil
}
