using System.Runtime.InteropServices;

namespace DeferRuntime.Platform;

/// <summary>
/// A real sleep shorter than Thread.Sleep(1): usleep(50) on Linux (about 50-110 µs with the default
/// timer slack), Thread.Sleep(1) elsewhere. Long enough for a lower-priority thread on the same core to
/// run; short enough that a spinner that backed off does not add a millisecond to every hand-over.
/// </summary>
internal static partial class Nap
{
    [LibraryImport("libc", EntryPoint = "usleep", SetLastError = true)]
    private static partial int USleep(uint microseconds);

    public static void Short()
    {
        if (OperatingSystem.IsLinux())
        {
            USleep(50);
        }
        else
        {
            Thread.Sleep(1);
        }
    }
}
