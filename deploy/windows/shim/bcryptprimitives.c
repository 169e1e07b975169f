/*
 * bcryptprimitives.dll for Wine 8, which lacks it: Rust's standard library (1.78+) imports
 * ProcessPrng from it, and without the DLL a Rust .exe exits at once with status 53.
 * Only for running the Windows build under Wine in CI; never shipped. Real Windows (8.1+) has it.
 */
#include <windows.h>
#include <ntsecapi.h>

/* Documented to always succeed: fills `data` with `len` random bytes. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (!RtlGenRandom(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
