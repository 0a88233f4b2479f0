package core

import (
	"os"
	"runtime/pprof"
)

// startProfile starts a CPU profile of the process's Go side into the file
// TRAILSTACK_CPUPROFILE names, if any. r.mu is held.
func (r *Registry) startProfile(log *Logger) {
	path := os.Getenv("TRAILSTACK_CPUPROFILE")
	if path == "" || r.profile != nil {
		return
	}
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		log.Warnf("TRAILSTACK_CPUPROFILE: %v", err)
		return
	}
	r.profile = f
}

// stopProfile writes the profile out once the last instance has gone. r.mu is held.
func (r *Registry) stopProfile() {
	if r.profile != nil {
		pprof.StopCPUProfile()
		r.profile.Close()
		r.profile = nil
	}
}
