// fxsim reference RTL: a model of the datapaths fxsim simulates, to compare fxsim's golden vectors (and
// a design under test) against. It is written for clarity, not area or speed; it is not a product.
// Verilog-2005; Icarus Verilog (iverilog -g2005 or later) and Verilator (--binary) accept it.
//
//   fxsim_dot          one output's dot product: zero points, multiplier, alignment, and the
//                      accumulation in sequential, adder-tree or chunked-lane order, with the
//                      accumulator's overflow mode after every single addition
//   fxsim_output_stage bias add, requantization, output zero point, activation clamp, output register
//   fxsim_conv_patch   the conv2d patch order: which input element (or padding) and which weight meet
//                      at reduction step k of output (n, o, oh, ow)
//
// See docs/golden-vectors.md ("The reference RTL") for the cycle behaviour and the trace order.
`timescale 1ns/1ps

// One output element (operands: codes minus zero points; multiplier; product register; alignment, as in
// fxsim.datapath.Datapath). Pulse `start` for one clock with a_vec/b_vec/init valid (and held until `busy`
// falls); every following clock performs the additions of one cycle. After each clock, the first
// `tr_n` registers of `nodes` hold the values that clock produced, in fxsim's trace order; `busy` falls
// on the clock that produces the last one, and nodes[0] then holds the accumulator.
//
// ORDER 0 sequential: the start clock loads init (1 value), then one product per clock (1 value each).
// ORDER 2 chunked:    lane l owns products l*C .. l*C+C-1 (C = ceil(K/LANES)); lane 0 starts at init, the
//                     others at 0. Clock c adds product l*C+c in every lane at once (LANES values: every
//                     lane register, lane order; a lane past the end of K holds its value). Then the
//                     lanes are combined: COMBINE 0 adds lane 1, 2, ... to lane 0 (1 value per clock),
//                     COMBINE 1 is a pairwise tree at the accumulator's width (one level per clock).
// ORDER 1 tree:       the start clock forms all K products (no value); each clock then computes one
//                     level of a pairwise tree (level l adds neighbours in a LEVEL_BITS[l]-bit register,
//                     the accumulator's width beyond NLEVELS; an odd last term passes through; values in
//                     node order), and a last clock adds the root to init (1 value).
module fxsim_dot #(
    parameter integer K = 4,
    parameter integer ORDER = 0,          // 0 sequential, 1 tree, 2 chunked
    parameter integer LANES = 1,
    parameter integer COMBINE = 0,        // chunked: 0 sequential, 1 tree
    parameter integer A_BITS = 8, A_SIGNED = 1, A_ZP = 0,
    parameter integer B_BITS = 8, B_SIGNED = 1, B_ZP = 0,
    parameter integer ZP_BITS = 0,        // width of the zero-point subtractors (0: exact)
    parameter integer P_BITS = 0,         // product register width (0: the exact product goes on)
    parameter integer P_SIGNED = 1, P_SHIFT = 0, P_MODE = 0, P_OVF = 0,   // its cut: LSBs dropped, rounding, overflow
    parameter integer A_SHIFT = 0,        // product LSBs dropped onto the accumulator's binary point (<0: left shift)
    parameter integer A_MODE = 0,         // their rounding
    parameter integer ACC_BITS = 32, ACC_SIGNED = 1, ACC_OVF = 0,
    parameter integer NLEVELS = 0,
    parameter [8*16-1:0] LEVEL_BITS = 0,  // tree level l's width in bits [8*l +: 8]
    parameter integer NN = (K > LANES) ? K : LANES
) (
    input  wire                   clk,
    input  wire                   start,
    input  wire signed [71:0]     init,
    input  wire [K*A_BITS-1:0]    a_vec,
    input  wire [K*B_BITS-1:0]    b_vec,
    output reg                    busy,
    output reg  [31:0]            tr_n,
    output wire [NN*72-1:0]       nodes
);
`include "fxsim_functions.vh"
    localparam integer C = (K + LANES - 1) / LANES;
    localparam integer IDLE = 0, SEQ = 1, LANE = 2, COMB = 3, LEVEL = 4, FINAL = 5;

    reg signed [71:0] node [0:NN-1];
    integer phase, step, n, level, q, l, lb;
    genvar gi;
    generate for (gi = 0; gi < NN; gi = gi + 1) begin : flat
        assign nodes[gi*72 +: 72] = node[gi];
    end endgenerate

    // operand k minus its zero point, in a ZP_BITS-wide subtractor when one is given
    function signed [71:0] opnd;
        input [71:0] code;
        input integer bits, sgn, zp;
        reg signed [71:0] v;
        begin
            v = code & ((72'sd1 <<< bits) - 72'sd1);
            if (sgn != 0 && v >= (72'sd1 <<< (bits - 1))) v = v - (72'sd1 <<< bits);
            v = v - $signed(zp);
            if (ZP_BITS != 0) v = fx_ovf(v, ZP_BITS, 1, 0);
            opnd = v;
        end
    endfunction

    // multiplier -> product register (optional: rounding, then overflow) -> alignment to the accumulator
    function signed [71:0] prod;
        input integer k;
        reg signed [71:0] p;
        begin
            p = opnd(a_vec[k*A_BITS +: A_BITS], A_BITS, A_SIGNED, A_ZP) *
                opnd(b_vec[k*B_BITS +: B_BITS], B_BITS, B_SIGNED, B_ZP);
            if (P_BITS != 0) p = fx_ovf(fx_round(p, P_SHIFT, P_MODE), P_BITS, P_SIGNED, P_OVF);
            prod = fx_round(p, A_SHIFT, A_MODE);
        end
    endfunction

    function signed [71:0] add;
        input signed [71:0] x, y;
        input integer bits;
        begin
            add = fx_ovf(x + y, bits, ACC_SIGNED, ACC_OVF);
        end
    endfunction

    initial begin
        busy = 0; tr_n = 0; phase = IDLE;
        for (q = 0; q < NN; q = q + 1) node[q] = 72'sd0;   // a reset: no X on `nodes`
    end

    // node[] is written with blocking assignments (ascending index: a tree level reads node[2q], node[2q+1]
    // before node[q'] >= those is written); it is read only here and through `nodes`, sampled after the edge
    always @(posedge clk) begin
        tr_n <= 0;
        if (start) begin
            busy <= 1;
            step <= 0;
            level <= 0;
            if (ORDER == 0) begin
                node[0] = init;
                tr_n <= 1;
                phase <= SEQ;
            end else if (ORDER == 2) begin
                for (l = 0; l < LANES; l = l + 1) node[l] = (l == 0) ? init : 72'sd0;
                phase <= LANE;
            end else begin
                for (q = 0; q < K; q = q + 1) node[q] = prod(q);
                n <= K;
                phase <= (K == 1) ? FINAL : LEVEL;
            end
        end else case (phase)
            SEQ: begin
                node[0] = add(node[0], prod(step), ACC_BITS);
                tr_n <= 1;
                step <= step + 1;
                if (step == K - 1) begin phase <= IDLE; busy <= 0; end
            end
            LANE: begin
                for (l = 0; l < LANES; l = l + 1)
                    if (l * C + step < K) node[l] = add(node[l], prod(l * C + step), ACC_BITS);
                tr_n <= LANES;
                step <= step + 1;
                if (step == C - 1) begin
                    step <= 1;
                    n <= LANES;
                    phase <= (COMBINE == 0) ? COMB : LEVEL;
                end
            end
            COMB: begin
                node[0] = add(node[0], node[step], ACC_BITS);
                tr_n <= 1;
                step <= step + 1;
                if (step == LANES - 1) begin phase <= IDLE; busy <= 0; end
            end
            LEVEL: begin
                lb = (ORDER == 1 && level < NLEVELS) ? {24'd0, LEVEL_BITS[8*level +: 8]} : ACC_BITS;
                for (q = 0; q < n / 2; q = q + 1) node[q] = add(node[2*q], node[2*q+1], lb);
                if (n % 2 == 1) node[n/2] = node[n-1];
                tr_n <= n / 2;
                n <= (n + 1) / 2;
                level <= level + 1;
                if ((n + 1) / 2 == 1) begin
                    if (ORDER == 1) phase <= FINAL;
                    else begin phase <= IDLE; busy <= 0; end
                end
            end
            FINAL: begin
                node[0] = add(init, node[0], ACC_BITS);
                tr_n <= 1;
                phase <= IDLE;
                busy <= 0;
            end
            default: ;
        endcase
    end
endmodule

// The output stage, combinational, in fxsim's order (fxsim.engines.output_stage.output_stage):
//   1. BIAS_ADD: acc + bias in a BIAS_BITS-wide register with overflow BIAS_OVF (bias not preloaded)
//   2. requantization RQ: 0 none, 1 dyadic round(x * mult / 2**shift) with RQ_ROUNDING, 2 shift
//      round(x / 2**shift), 3 gemmlowp (double rounding), 4 gemmlowp single rounding; then + OUT_ZP
//   3. activation ACT: 0 none, 1 relu = max(x, OUT_ZP), 2 clamp to [ACT_LO, ACT_HI]
//   4. the output register (HAS_OUT): OUT_BITS wide, OUT_SIGNED, overflow OUT_OVF
// mult and shift come per output channel (from the constants' memory files), so they are inputs.
module fxsim_output_stage #(
    parameter integer BIAS_ADD = 0, BIAS_BITS = 32, BIAS_SIGNED = 1, BIAS_OVF = 0,
    parameter integer RQ = 0, RQ_ROUNDING = 8, OUT_ZP = 0,
    parameter integer ACT = 0, ACT_LO = 0, ACT_HI = 0,
    parameter integer HAS_OUT = 0, OUT_BITS = 8, OUT_SIGNED = 1, OUT_OVF = 1
) (
    input  wire signed [71:0] acc,
    input  wire signed [71:0] bias,
    input  wire signed [71:0] mult,
    input  wire signed [31:0] shift,
    output reg  signed [71:0] out
);
`include "fxsim_functions.vh"
    reg signed [71:0] x;
    always @* begin
        x = acc;
        if (BIAS_ADD != 0) x = fx_ovf(x + bias, BIAS_BITS, BIAS_SIGNED, BIAS_OVF);
        case (RQ)
            1: x = fx_round(x * mult, shift, RQ_ROUNDING);
            2: x = fx_round(x, shift, RQ_ROUNDING);
            3: x = fx_gemmlowp(x, mult, shift);
            4: x = fx_gemmlowp_single(x, mult, shift);
            default: ;
        endcase
        if (RQ != 0) x = x + OUT_ZP;
        if (ACT == 1 && x < OUT_ZP) x = OUT_ZP;
        if (ACT == 2) x = (x < ACT_LO) ? ACT_LO : (x > ACT_HI) ? ACT_HI : x;
        if (HAS_OUT != 0) x = fx_ovf(x, OUT_BITS, OUT_SIGNED, OUT_OVF);
        out = x;
    end
endmodule

// The conv2d patch order fxsim exports (PyTorch's OIHW weight flattening, "ckk"): reduction step k of
// output (n, o, oh, ow) multiplies input x[n][g*CG + c][ih][iw] (or the input zero point where (ih, iw)
// lies in the padding: pad = 1) by weight w[o][c][kh][kw], with c = k / (KH*KW), kh = k / KW % KH,
// kw = k % KW, g = o / (O/GROUPS), ih = oh*STRIDE - PAD + kh*DIL, iw = ow*STRIDE - PAD + kw*DIL.
module fxsim_conv_patch #(
    parameter integer C = 1, H = 1, W = 1, O = 1, KH = 1, KW = 1,
    parameter integer STRIDE = 1, PAD = 0, DIL = 1, GROUPS = 1
) (
    input  wire [31:0] o, oh, ow, k,
    output reg  [31:0] ci, ih, iw, c, kh, kw,
    output reg         pad
);
    localparam integer CG = C / GROUPS, OG = O / GROUPS;
    integer sh, sw;
    always @* begin
        c = k / (KH * KW);
        kh = (k / KW) % KH;
        kw = k % KW;
        ci = (o / OG) * CG + c;
        sh = oh * STRIDE - PAD + kh * DIL;
        sw = ow * STRIDE - PAD + kw * DIL;
        pad = sh < 0 || sh >= H || sw < 0 || sw >= W;
        ih = pad ? 0 : sh;
        iw = pad ? 0 : sw;
    end
endmodule

// fxsim_dot followed by fxsim_output_stage: one output element from operands to output register, as one
// top level for cocotb tests (parameters: those of both modules).
module fxsim_core #(
    parameter integer K = 4, ORDER = 0, LANES = 1, COMBINE = 0,
    parameter integer A_BITS = 8, A_SIGNED = 1, A_ZP = 0, B_BITS = 8, B_SIGNED = 1, B_ZP = 0,
    parameter integer ZP_BITS = 0, P_BITS = 0, P_SIGNED = 1, P_SHIFT = 0, P_MODE = 0, P_OVF = 0,
    parameter integer A_SHIFT = 0, A_MODE = 0, ACC_BITS = 32, ACC_SIGNED = 1, ACC_OVF = 0,
    parameter integer NLEVELS = 0,
    parameter [8*16-1:0] LEVEL_BITS = 0,
    parameter integer BIAS_ADD = 0, BIAS_BITS = 32, BIAS_SIGNED = 1, BIAS_OVF = 0,
    parameter integer RQ = 0, RQ_ROUNDING = 8, OUT_ZP = 0, ACT = 0, ACT_LO = 0, ACT_HI = 0,
    parameter integer HAS_OUT = 0, OUT_BITS = 8, OUT_SIGNED = 1, OUT_OVF = 1,
    parameter integer NN = (K > LANES) ? K : LANES
) (
    input  wire                clk,
    input  wire                start,
    input  wire signed [71:0]  init,
    input  wire [K*A_BITS-1:0] a_vec,
    input  wire [K*B_BITS-1:0] b_vec,
    input  wire signed [71:0]  bias,
    input  wire signed [71:0]  mult,
    input  wire signed [31:0]  shift,
    output wire                busy,
    output wire [31:0]         tr_n,
    output wire [NN*72-1:0]    nodes,
    output wire signed [71:0]  acc,
    output wire signed [71:0]  out
);
    fxsim_dot #(.K(K), .ORDER(ORDER), .LANES(LANES), .COMBINE(COMBINE), .A_BITS(A_BITS), .A_SIGNED(A_SIGNED),
                .A_ZP(A_ZP), .B_BITS(B_BITS), .B_SIGNED(B_SIGNED), .B_ZP(B_ZP), .ZP_BITS(ZP_BITS), .P_BITS(P_BITS),
                .P_SIGNED(P_SIGNED), .P_SHIFT(P_SHIFT), .P_MODE(P_MODE), .P_OVF(P_OVF), .A_SHIFT(A_SHIFT), .A_MODE(A_MODE),
                .ACC_BITS(ACC_BITS), .ACC_SIGNED(ACC_SIGNED), .ACC_OVF(ACC_OVF), .NLEVELS(NLEVELS),
                .LEVEL_BITS(LEVEL_BITS)) dot (
        .clk(clk), .start(start), .init(init), .a_vec(a_vec), .b_vec(b_vec), .busy(busy), .tr_n(tr_n),
        .nodes(nodes));
    assign acc = nodes[71:0];
    fxsim_output_stage #(.BIAS_ADD(BIAS_ADD), .BIAS_BITS(BIAS_BITS), .BIAS_SIGNED(BIAS_SIGNED),
                         .BIAS_OVF(BIAS_OVF), .RQ(RQ), .RQ_ROUNDING(RQ_ROUNDING), .OUT_ZP(OUT_ZP), .ACT(ACT),
                         .ACT_LO(ACT_LO), .ACT_HI(ACT_HI), .HAS_OUT(HAS_OUT), .OUT_BITS(OUT_BITS),
                         .OUT_SIGNED(OUT_SIGNED), .OUT_OVF(OUT_OVF)) ostage (
        .acc(acc), .bias(bias), .mult(mult), .shift(shift), .out(out));
endmodule
