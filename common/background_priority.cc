#include "common/background_priority.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace otaro {

bool LowerThisThreadToBackgroundPriority() {
  // On Linux PRIO_PROCESS with a thread id sets that thread's nice value only.
  // A thread already below that priority (the whole server run under nice)
  // stays where it is: this only ever lowers.
  const id_t tid = static_cast<id_t>(::syscall(SYS_gettid));
  errno = 0;
  const int now = ::getpriority(PRIO_PROCESS, tid);
  if (errno != 0) return false;
  if (now >= kBackgroundNice) return true;
  return ::setpriority(PRIO_PROCESS, tid, kBackgroundNice) == 0;
}

}  // namespace otaro
