/* The pod sandbox's process for the lab's kubelet nodes (no registry serves
 * registry.k8s.io/pause here): it holds the pod's namespaces and does nothing until it
 * is told to stop. Reaps children as PID 1 of its pid namespace must. Built statically
 * by scripts/pause-image.sh into a one-file image. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {}
}

int main(void) {
  struct sigaction s = {0};
  s.sa_handler = stop;
  sigaction(SIGINT, &s, NULL);
  sigaction(SIGTERM, &s, NULL);
  s.sa_handler = reap;
  s.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &s, NULL);
  for (;;) pause();
  return 1;
}
