using DeferRuntime;
using DeferRuntime.Devices;
using DeferRuntime.Interrupts;

namespace NicDriverSample;

/// <summary>
/// A NAPI driver for <see cref="LoopbackNic"/>, written the way a kernel NIC driver is: the top half
/// acknowledges and masks the device interrupt, moves what has arrived into the RX ring and schedules
/// NAPI; the poll (NET_RX softirq) processes up to its budget from the ring, refilling it from the device,
/// and only when the device has nothing left completes and unmasks the interrupt again.
/// </summary>
/// <remarks>
/// Processing checks each frame's checksum and its sequence number against the next one expected from its
/// sender. Counts are written by one context at a time (the top half runs one chain per line; NAPI never
/// polls an instance on two CPUs at once) and read by others with Volatile. The tests compile this file too.
/// </remarks>
internal sealed class LoopbackNicDriver : IDisposable
{
    private readonly LoopbackNic _nic;
    private readonly NapiStruct _napi;
    private readonly IrqAction _irq;
    private readonly long[] _nextSequence; // poll: the next sequence number expected per sender
    private readonly long[] _processedFrom; // poll: frames processed per sender
    private long _processed; // poll
    private long _sequenceErrors; // poll: frames out of order (a gap is a loss, a step back a duplicate)
    private long _badFrames; // poll: bad checksum, too short, or an unknown sender
    private long _topHalves; // top half: interrupts that were this device's

    /// <summary>probe + ndo_open: NAPI added and enabled, the IRQ requested, then the device interrupt unmasked.</summary>
    public LoopbackNicDriver(Runtime runtime, LoopbackNic nic, int senders, int weight = NapiStruct.DefaultWeight)
    {
        _nic = nic;
        _nextSequence = new long[senders];
        _processedFrom = new long[senders];
        _napi = runtime.NetRx.NapiAdd(Poll, nic.Name, weight);
        _napi.Enable();
        _irq = runtime.Irqs.RequestIrq(nic.Irq, TopHalf, IrqFlags.None, nic.Name, this);
        nic.EnableInterrupts();
    }

    public NapiStruct Napi => _napi;

    public long Processed => Volatile.Read(ref _processed);

    public long SequenceErrors => Volatile.Read(ref _sequenceErrors);

    public long BadFrames => Volatile.Read(ref _badFrames);

    public long TopHalves => Volatile.Read(ref _topHalves);

    public long ProcessedFrom(int sender) => Volatile.Read(ref _processedFrom[sender]);

    /// <summary>The hard-IRQ handler.</summary>
    private IrqReturn TopHalf(int irq, object? devId)
    {
        if (!_nic.AckAndDisableInterrupts())
        {
            return IrqReturn.None;
        }
        Volatile.Write(ref _topHalves, _topHalves + 1);
        _nic.ReceiveIntoRing();
        _napi.Schedule();
        return IrqReturn.Handled;
    }

    /// <summary>The NAPI poll, in NET_RX on the CPU that took the interrupt.</summary>
    private int Poll(NapiStruct napi, int budget)
    {
        int work = 0;
        while (work < budget)
        {
            if (!_nic.Rx.TryPeek(out var frame))
            {
                // The ring is empty: the device keeps receiving while its interrupt is masked.
                if (_nic.ReceiveIntoRing() == 0)
                {
                    break;
                }
                continue;
            }
            Process(frame);
            _nic.Rx.Release();
            work++;
        }
        // Less than the budget: the device is drained. Back to interrupts, unless a schedule was missed.
        if (work < budget && napi.CompleteDone(work))
        {
            _nic.EnableInterrupts();
        }
        return work;
    }

    private void Process(ReadOnlySpan<byte> frame)
    {
        if (!NicFrame.TryRead(frame, out int sender, out long sequence) || (uint)sender >= (uint)_nextSequence.Length)
        {
            Volatile.Write(ref _badFrames, _badFrames + 1);
        }
        else
        {
            if (sequence != _nextSequence[sender])
            {
                Volatile.Write(ref _sequenceErrors, _sequenceErrors + 1);
            }
            _nextSequence[sender] = sequence + 1;
            Volatile.Write(ref _processedFrom[sender], _processedFrom[sender] + 1);
        }
        Volatile.Write(ref _processed, _processed + 1);
    }

    /// <summary>
    /// ndo_stop + remove, in the kernel's order: napi_disable() first (waits for a running poll, whose
    /// completion may still unmask the device), then mask the device, free the IRQ (waits for a running top
    /// half; one that runs now finds NAPI disabled and leaves its frames in the ring), delete NAPI.
    /// </summary>
    public void Dispose()
    {
        if (!_napi.IsDisabled)
        {
            _napi.Disable();
        }
        _nic.DisableInterrupts();
        _irq.Dispose();
        _napi.Dispose();
    }
}
