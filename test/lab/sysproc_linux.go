package lab

import "syscall"

// sysProcAttr puts a component in its own process group and kills it when
// the process that started it dies, however it dies.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
