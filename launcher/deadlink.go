package launcher

// abandon lets go of the hold on a dead link: nothing is sent and nothing
// is waited for (stop, kill, detach and release wait for an answer that a
// dead link never brings). The server's watchdog sees no more pings and
// deals with the kernel as linger and keep say.
func (rk *remoteKernel) abandon() {
	rk.mu.Lock()
	rk.closed = true
	rk.mu.Unlock()
	_ = rk.sess.Close()
}
