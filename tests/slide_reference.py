"""The slide deck's original classes, verbatim (the user's code), used as the reference formulas in tests
and benchmarks. Only the classes needed for equivalence are kept."""

import torch
import torch.nn as nn


class RelationalModule(nn.Module):
    def __init__(self, hidden_size):
        super(RelationalModule, self).__init__()
        self.fc1 = nn.Linear(hidden_size * 2, hidden_size)
        self.fc2 = nn.Linear(hidden_size, hidden_size)

    def forward(self, h):
        batch_size, seq_len, hidden_size = h.size()
        h_expanded = h.unsqueeze(2).expand(-1, -1, seq_len, -1)
        h_pairs = torch.cat([h_expanded, h_expanded.transpose(1, 2)], dim=-1)
        relations = self.fc2(torch.relu(self.fc1(h_pairs)))
        return relations.max(dim=2)[0]


class R2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(R2N2, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.rnn(x)
        out = self.fc(out[:, -1, :])
        return out


class EnhancedR2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(EnhancedR2N2, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.relational = RelationalModule(hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.rnn(x)
        relational_out = self.relational(out)
        final_out = self.fc(relational_out[:, -1, :])
        return final_out


class AttentionR2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(AttentionR2N2, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.attention = nn.Linear(hidden_size, 1)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.rnn(x)
        attention_weights = torch.softmax(self.attention(out), dim=1)
        context = torch.sum(attention_weights * out, dim=1)
        return self.fc(context)


class MaskedR2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(MaskedR2N2, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x, lengths):
        packed_x = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed_x)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True)
        last_hidden = out[torch.arange(out.size(0)), lengths - 1]
        return self.fc(last_hidden)


class SentimentR2N2(nn.Module):
    def __init__(self, vocab_size, embed_size, hidden_size, output_size):
        super(SentimentR2N2, self).__init__()
        self.embedding = nn.Embedding(vocab_size, embed_size)
        self.rnn = nn.RNN(embed_size, hidden_size, batch_first=True)
        self.relational = RelationalModule(hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        embedded = self.embedding(x)
        out, _ = self.rnn(embedded)
        relational_out = self.relational(out)
        logits = self.fc(relational_out[:, -1, :])
        return torch.softmax(logits, dim=1)


class StockPriceR2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size, num_layers):
        super(StockPriceR2N2, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size, num_layers, batch_first=True)
        self.relational = RelationalModule(hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.rnn(x)
        relational_out = self.relational(out)
        forecast = self.fc(relational_out[:, -1, :])
        return forecast


class GRUR2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(GRUR2N2, self).__init__()
        self.gru = nn.GRU(input_size, hidden_size, batch_first=True)
        self.relational = RelationalModule(hidden_size)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.gru(x)
        relational_out = self.relational(out)
        final_out = self.fc(relational_out[:, -1, :])
        return final_out


class BidirectionalR2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(BidirectionalR2N2, self).__init__()
        self.birnn = nn.RNN(input_size, hidden_size, bidirectional=True, batch_first=True)
        self.relational = RelationalModule(hidden_size * 2)
        self.fc = nn.Linear(hidden_size * 2, output_size)

    def forward(self, x):
        out, _ = self.birnn(x)
        relational_out = self.relational(out)
        final_out = self.fc(relational_out[:, -1, :])
        return final_out


class VisualizableAttentionR2N2(nn.Module):
    def __init__(self, input_size, hidden_size, output_size):
        super(VisualizableAttentionR2N2, self).__init__()
        self.rnn = nn.RNN(input_size, hidden_size, batch_first=True)
        self.attention = nn.Linear(hidden_size, 1)
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, x):
        out, _ = self.rnn(x)
        attention_weights = torch.softmax(self.attention(out), dim=1)
        context = torch.sum(attention_weights * out, dim=1)
        return self.fc(context), attention_weights
