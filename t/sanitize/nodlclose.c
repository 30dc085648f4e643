/*
 * Preloaded into nginx by t/sanitize/run.sh (after the ASan runtime, or
 * under valgrind): dlclose() does nothing, so every dlopen()ed object
 * stays mapped until the process is gone.  nginx unloads its dynamic
 * modules when a process exits (the cycle pool's cleanups) and the leak
 * checkers look at the heap after that: LeakSanitizer could not name the
 * module's frames ("<unknown module>"), and what the module keeps for the
 * life of a process in a static variable (a library context made once)
 * would count as lost, because the variable itself was unmapped.
 */

int
dlclose(void *handle)
{
    (void) handle;

    return 0;
}
