using Microsoft.Extensions.Logging;

namespace DeferRuntime.Hosting;

/// <summary>The hosting's log messages (category "DeferRuntime"), with stable event ids for filters and alerts.</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "DeferRuntime booted: {CpuCount} CPUs, HZ {Hz}, workqueues: {Workqueues}")]
    public static partial void Booted(ILogger logger, int cpuCount, int hz, string workqueues);

    [LoggerMessage(2, LogLevel.Information, "DeferRuntime placement not granted by the OS (the runtime works without it): {Placement}")]
    public static partial void PlacementRefused(ILogger logger, string placement);

    [LoggerMessage(10, LogLevel.Error, "Oops on CPU {Cpu} ({Thread}) in {Source}: {Message}")]
    public static partial void Oops(ILogger logger, Exception exception, int cpu, string thread, string source, string message);

    [LoggerMessage(11, LogLevel.Warning, "WARNING on CPU {Cpu} ({Thread}) in {Source}: {Message}")]
    public static partial void KernelWarning(ILogger logger, int cpu, string thread, string source, string message);

    [LoggerMessage(12, LogLevel.Warning, "Spurious interrupt line disabled on CPU {Cpu} ({Source}): {Message}")]
    public static partial void SpuriousIrqDisabled(ILogger logger, int cpu, string source, string message);

    [LoggerMessage(13, LogLevel.Error, "Workqueue stall (watchdog) on CPU {Cpu}: {Message}")]
    public static partial void WorkqueueStall(ILogger logger, int cpu, string message);

    [LoggerMessage(14, LogLevel.Warning, "Lock validator: possible {Kind} detected: {Message}")]
    public static partial void LockValidatorReport(ILogger logger, string kind, string message);

    [LoggerMessage(15, LogLevel.Critical, "{Message}")]
    public static partial void Panic(ILogger logger, string message);

    [LoggerMessage(16, LogLevel.Warning, "{Dropped} DeferRuntime report(s) were dropped: more than {Capacity} waited to be logged")]
    public static partial void ReportsDropped(ILogger logger, long dropped, int capacity);

    [LoggerMessage(20, LogLevel.Information, "DeferRuntime stopping: draining bottom halves and workqueues, then freeing the IRQ lines left requested (bound {TimeoutSeconds} s, or the host's shutdown timeout)")]
    public static partial void Stopping(ILogger logger, double timeoutSeconds);

    [LoggerMessage(27, LogLevel.Warning, "DeferRuntime shutdown left {State} {Kind} '{Name}' (workqueue {Workqueue}, CPU {Cpu}, thread {Thread})")]
    public static partial void ShutdownItem(ILogger logger, ShutdownItemState state, ShutdownItemKind kind, string name, string? workqueue, int? cpu, string? thread);

    [LoggerMessage(21, LogLevel.Information, "DeferRuntime freed {Count} IRQ action(s) still requested")]
    public static partial void IrqsFreed(ILogger logger, int count);

    [LoggerMessage(22, LogLevel.Information, "DeferRuntime stopped: everything accepted ran ({ElapsedMs:0.#} ms)")]
    public static partial void ShutdownComplete(ILogger logger, double elapsedMs);

    [LoggerMessage(23, LogLevel.Warning, "DeferRuntime stopped after {ElapsedMs:0.#} ms without finishing, bounded by {Bound}; could not finish: {Abandoned}")]
    public static partial void ShutdownIncomplete(ILogger logger, double elapsedMs, string bound, string abandoned);

    [LoggerMessage(24, LogLevel.Information, "DeferRuntime left {Timers} timer(s) armed that were not due yet ({DelayedWork} of them delayed work): not run early, never run")]
    public static partial void TimersLeftArmed(ILogger logger, long timers, long delayedWork);

    [LoggerMessage(25, LogLevel.Error, "DeferRuntime shutdown after a panic: nothing was drained. {Message}")]
    public static partial void ShutdownAfterPanic(ILogger logger, string message);
}
