using System.Diagnostics;
using System.Numerics;
using System.Runtime.ExceptionServices;
using DeferRuntime.Cpus;
using DeferRuntime.Devices;
using DeferRuntime.Interrupts;

namespace DeferRuntime.Cli.Storm.Paths;

/// <summary>
/// The NAPI NIC: a <see cref="LoopbackNic"/> on a real loopback UDP socket, a driver written as a kernel
/// NIC driver is (the top half acknowledges and masks the device, moves what arrived into the RX ring,
/// napi_schedule()s; the poll drains the ring and the socket, completes and unmasks when empty), and a
/// sender thread <c>nic-sender</c> that paces datagrams at the path's rate and arrival process.
/// </summary>
/// <remarks>
/// <para>"Assert" for this path is the send: the sender stamps each datagram just before send(2), so its
/// latencies include the loopback stack and the device thread's poll(2) wake-up, as a real NIC's include
/// the wire; its intended time is when the pacer said it was due. The stamps are kept in rings indexed by
/// sequence number, which the frame carries; the sender
/// never has more than the ring's size unprocessed (its window), so a stamp is read before it is reused.
/// The window also keeps the kernel's socket buffer from overflowing: UDP has no flow control.</para>
/// <para>Only frames the top half itself moved into the ring have a top-half latency; under a flood most
/// frames are polled with the device masked, which is NAPI's point (see the poll/interrupt counts).</para>
/// </remarks>
internal sealed class NapiNicPath : StormPath
{
    private readonly LoopbackNic _nic;
    private readonly NapiStruct _napi;
    private readonly long[] _sentAt; // I: send stamps by sequence & _mask (sender writes, poll reads)
    private readonly long[] _intendedAt; // I: intended send times, likewise
    private readonly int _mask; // I
    private readonly long[] _batch; // poll: the send stamps of the frames of one poll
    private readonly long[] _batchIntended; // poll: their intended times
    private readonly LoopbackSender _sender; // sender thread: one for every phase, so sequence numbers run on
    private IrqAction? _action;
    private Thread? _senderThread;
    private ExceptionDispatchInfo? _senderFault;
    private volatile bool _stopSending;
    private volatile bool _sending;

    private long _sent; // sender: datagrams sent (all phases)
    private long _measureFrom; // sequence of the first measured datagram
    private long _processed; // poll: frames processed (all phases)
    private long _badFrames; // poll
    private long _topEntry; // top half -> poll: entry stamp of the top half that moved _topFrames
    private long _topTaken; // top half -> poll: its stamp after it moved them (for frames sent after its entry)
    private int _topFrames; // top half -> poll: frames that top half moved (they get a top-half latency)
    private long _faultCharge; // poll: packets net_rx_action charged for polls that threw beyond their real work
    private long _windowStalls; // sender
    private string? _senderPinError; // sender
    private long _lateArrivals; // sender
    private long _phaseStart, _phaseEnd; // sender: the measured phase's generation interval
    private LoopbackNicStats? _baseline;
    private NapiStats? _napiBaseline;

    public NapiNicPath(PathContext context)
        : base(StormPathKind.Napi, context)
    {
        _nic = new LoopbackNic(context.Runtime, new LoopbackNicOptions { Name = "storm-nic", DeviceCores = context.DeviceCores });
        // Window: what the kernel's socket buffer surely holds, assuming 2 KiB of its accounting per small
        // datagram (as the NicDriver sample does); a power of two, 64 to 4096.
        int window = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Clamp(_nic.SocketReceiveBufferBytes / 2048, 64, 4096));
        if (window > _nic.SocketReceiveBufferBytes / 2048 && window > 64)
        {
            window /= 2;
        }
        Window = window;
        _sentAt = new long[window];
        _intendedAt = new long[window];
        _mask = window - 1;
        _napi = context.Runtime.NetRx.NapiAdd(Poll, "storm-nic");
        _batch = new long[_napi.Weight];
        _batchIntended = new long[_napi.Weight];
        _sender = new LoopbackSender(_nic.LocalEndPoint, senderId: 0);
    }

    public override int Irq => _nic.Irq;

    /// <summary>Datagrams the sender may have unprocessed.</summary>
    public int Window { get; }

    public override long Generated => Interlocked.Read(ref _sent) - _measureFrom;

    public long BadFrames => Volatile.Read(ref _badFrames);

    /// <summary>Packets NAPI counted for polls that threw, beyond the frames those polls processed.</summary>
    public long FaultCharge => Volatile.Read(ref _faultCharge);

    public long WindowStalls => Volatile.Read(ref _windowStalls);

    public long LateArrivals => Volatile.Read(ref _lateArrivals);

    /// <summary>The measured phase's generation interval.</summary>
    public TimeSpan Elapsed => _phaseEnd == 0 ? TimeSpan.Zero : Stopwatch.GetElapsedTime(_phaseStart, _phaseEnd);

    public bool IsSending => _sending;

    /// <summary>Device threads the OS refused to pin to --device-cores, and why.</summary>
    public IReadOnlyList<string> PinErrors =>
        new[] { ("nic-sender", Volatile.Read(ref _senderPinError)), ("nic/storm-nic", _nic.PinError) }
            .Where(e => e.Item2 is not null).Select(e => $"{e.Item1}: {e.Item2}").ToArray();

    public LoopbackNicStats NicStats => _nic.GetStats();

    public LoopbackNicStats? NicBaseline => _baseline;

    public NapiStats NapiStats => _napi.GetStats();

    public NapiStats? NapiBaseline => _napiBaseline;

    public IrqLineStats? LineBaseline { get; private set; }

    /// <summary>probe + ndo_open: NAPI enabled, IRQ requested, device interrupt unmasked, device started.</summary>
    public void Start()
    {
        _napi.Enable();
        _action = Runtime.Irqs.RequestIrq(Irq, TopHalf, IrqFlags.None, "storm-nic");
        _nic.EnableInterrupts();
        _nic.Start();
    }

    public override void BeginMeasurement()
    {
        base.BeginMeasurement();
        _measureFrom = Interlocked.Read(ref _sent);
        _faultCharge = 0;
        _baseline = _nic.GetStats();
        _napiBaseline = _napi.GetStats();
        LineBaseline = Runtime.Irqs.GetStats(Irq);
    }

    /// <summary>Starts the sender for one phase: <paramref name="duration"/> at <paramref name="rate"/>.</summary>
    public void StartSending(TimeSpan duration, double rate, StormArrival arrival, int burstLength, int seed)
    {
        _stopSending = false;
        _sending = true;
        _senderThread = new Thread(() => SenderMain(duration, rate, arrival, burstLength, seed)) { Name = "nic-sender", IsBackground = true };
        _senderThread.Start();
    }

    /// <summary>Ends the phase early.</summary>
    public void StopSending() => _stopSending = true;

    /// <summary>Waits for the sender; rethrows what stopped it.</summary>
    public void JoinSender()
    {
        _senderThread?.Join();
        _senderFault?.Throw();
    }

    private void SenderMain(TimeSpan duration, double rate, StormArrival arrival, int burstLength, int seed)
    {
        try
        {
            var sender = _sender;
            if (Context.DeviceCores is { Count: > 0 } cores)
            {
                Volatile.Write(ref _senderPinError, DeferRuntime.Platform.ThreadPlacement.PinCurrentThreadToCores(cores.ToArray()));
            }
            var pacer = new ArrivalPacer(rate, arrival, burstLength, seed, TimeSpan.FromMilliseconds(1));
            long start = Stopwatch.GetTimestamp();
            long end = start + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            Volatile.Write(ref _phaseStart, start);
            Volatile.Write(ref _phaseEnd, 0);
            pacer.Begin(start);
            while (!_stopSending)
            {
                int burst = pacer.WaitNext(end, () => _stopSending, out long due);
                if (burst == 0)
                {
                    break;
                }
                for (int i = 0; i < burst && !_stopSending; i++)
                {
                    long seq = sender.Sent;
                    if (seq - Volatile.Read(ref _processed) >= Window)
                    {
                        Interlocked.Increment(ref _windowStalls);
                        var backoff = default(SpinWait);
                        while (seq - Volatile.Read(ref _processed) >= Window && !_stopSending)
                        {
                            backoff.SpinOnce(sleep1Threshold: -1);
                        }
                    }
                    _intendedAt[seq & _mask] = due;
                    _sentAt[seq & _mask] = Stopwatch.GetTimestamp();
                    sender.Send(1);
                    Volatile.Write(ref _sent, seq + 1);
                }
            }
            Volatile.Write(ref _phaseEnd, Stopwatch.GetTimestamp());
            Volatile.Write(ref _lateArrivals, _lateArrivals + pacer.LateArrivals);
        }
#pragma warning disable CA1031 // a device thread must not take the process down: JoinSender rethrows
        catch (Exception e)
#pragma warning restore CA1031
        {
            _senderFault = ExceptionDispatchInfo.Capture(e);
        }
        finally
        {
            _sending = false;
        }
    }

    /// <summary>The hard-IRQ handler: ICR read with auto-mask, receive what is there, napi_schedule().</summary>
    private IrqReturn TopHalf(int irq, object? devId)
    {
        long entry = Stopwatch.GetTimestamp();
        if (!_nic.AckAndDisableInterrupts())
        {
            return IrqReturn.None;
        }
        int moved = _nic.ReceiveIntoRing();
        // A frame sent after the entry stamp was taken by the top half later: it gets the stamp taken once it was in the ring.
        Volatile.Write(ref _topTaken, Stopwatch.GetTimestamp());
        Volatile.Write(ref _topEntry, entry);
        Volatile.Write(ref _topFrames, moved);
        _napi.Schedule();
        return IrqReturn.Handled;
    }

    /// <summary>The NAPI poll, in NET_RX: up to the budget from the ring, refilling it from the socket; complete and unmask when drained.</summary>
    private int Poll(NapiStruct napi, int budget)
    {
        int cpu = CpuContext.CurrentCpuId;
        long start = Stopwatch.GetTimestamp();
        long topEntry = Volatile.Read(ref _topEntry);
        long topTaken = Volatile.Read(ref _topTaken);
        int topFrames = Volatile.Read(ref _topFrames);
        int work = 0;
        while (work < budget)
        {
            if (!_nic.Rx.TryPeek(out var frame))
            {
                if (_nic.ReceiveIntoRing() == 0)
                {
                    break; // the device is empty
                }
                start = Stopwatch.GetTimestamp(); // these frames' bottom half starts now
                continue;
            }
            long sent, intended;
            if (NicFrame.TryRead(frame, out _, out long seq))
            {
                sent = _sentAt[seq & _mask];
                intended = _intendedAt[seq & _mask];
            }
            else
            {
                sent = intended = start; // a corrupt frame: counted, processed, timed from now
                _badFrames++;
            }
            _nic.Rx.Release();
            Latency.RecordGeneratorLag(intended, sent);
            if (topFrames > 0)
            {
                topFrames--;
                Latency.Record(LatencyStage.TopHalf, cpu, sent <= topEntry ? topEntry : topTaken, intended, sent);
            }
            Latency.Record(LatencyStage.BottomHalfStart, cpu, start, intended, sent);
            _batchIntended[work] = intended;
            _batch[work++] = sent;
        }
        Volatile.Write(ref _topFrames, topFrames);
        Work(start, work);
        long end = Stopwatch.GetTimestamp();
        for (int i = 0; i < work; i++)
        {
            Latency.Record(LatencyStage.BottomHalfEnd, cpu, end, _batchIntended[i], _batch[i]);
        }
        Volatile.Write(ref _processed, _processed + work);
        bool fault = work > 0 && CompleteBatch(work);
        // Less than the budget: drained. Back to interrupts, unless a schedule was missed meanwhile.
        if (work < budget && napi.CompleteDone(work))
        {
            _nic.EnableInterrupts();
        }
        if (fault)
        {
            // net_rx_action charges a poll that threw its whole weight (it cannot know the real work).
            Volatile.Write(ref _faultCharge, _faultCharge + (budget - work));
            ThrowInjected();
        }
        return work;
    }

    /// <summary>ndo_stop + remove, in the kernel's order (see the NicDriver sample).</summary>
    public override void Dispose()
    {
        _stopSending = true;
        _senderThread?.Join();
        _nic.Stop();
        if (!_napi.IsDisabled)
        {
            _napi.Disable();
        }
        _nic.DisableInterrupts();
        _action?.Dispose();
        _napi.Dispose();
        _nic.Dispose();
        _sender.Dispose();
    }
}
